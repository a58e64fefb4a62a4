"""The engine's objects built from the params schema: the same defaults, fields by name."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from alphaprune.augment import Augment
from alphaprune.branches.kinds import KINDS
from alphaprune.fitspec import Advance, Optimizer
from alphaprune.models import MODELS
from alphaprune.pipeline.params.recipe import (
    AdvanceConfig,
    AugmentConfig,
    OptimizerConfig,
    PruneConfig,
    TeacherConfig,
)
from alphaprune.pipeline.params.schema import MODEL_NAMES, RuntimeConfig
from alphaprune.pipeline.stages import engine
from alphaprune.runtime import Runtime

PAIRS = [
    (Augment, AugmentConfig),
    (Optimizer, OptimizerConfig),
    (Advance, AdvanceConfig),
]


@pytest.mark.parametrize(("engine_type", "config"), PAIRS, ids=lambda c: c.__name__)
def test_a_default_config_builds_the_engine_types_defaults(engine_type, config):
    """The schema writes the engine's defaults out (it imports no torch): they must agree. (The
    drift this once caught: Augment's crop_padding defaulted to 2, the config's to 4.)"""
    assert engine.build(engine_type, config()) == engine_type()


def test_the_runtime_is_built_by_name_with_its_device_resolved():
    runtime = engine.runtime_from(RuntimeConfig(device="cpu", workers=2, eval_batch_size=7))
    assert runtime == Runtime(torch.device("cpu"), workers=2, eval_batch_size=7)
    resolved = ("device", "world")  # what the run finds, not what params say
    defaults = {f.name: f.default for f in dataclasses.fields(Runtime) if f.name not in resolved}
    assert {k: getattr(RuntimeConfig(), k) for k in defaults} == defaults


def test_auto_claims_a_gpu_with_the_runtimes_jobs_per_gpu(monkeypatch):
    asked = []

    def resolve(*a, **kw):
        asked.append((a, kw))
        return torch.device("cpu")

    monkeypatch.setattr(engine, "resolve_device", resolve)
    runtime = engine.runtime_from(RuntimeConfig(jobs_per_gpu=3))
    # local_rank None: not one of a run's several processes, so `auto` claims a GPU itself
    assert asked == [(("auto", 3), {"local_rank": None})] and runtime.jobs_per_gpu == 3


def test_a_field_the_two_do_not_share_fails_loudly():
    @dataclasses.dataclass(frozen=True)
    class Narrow:
        noise_std: float = 0.0

    with pytest.raises(TypeError, match="disagree on fields"):
        engine.build(Narrow, AugmentConfig())


def test_the_schemas_branch_kinds_and_models_are_the_registrys():
    """The schema spells them out (it imports no torch): they must be the registries' names."""
    assert list(PruneConfig.model_fields["branch"].annotation.__args__) == list(KINDS)
    assert sorted(MODEL_NAMES) == sorted(MODELS)


def test_specs_carry_the_recipe():
    teacher = engine.teacher_spec(TeacherConfig(epochs=3, augment=AugmentConfig(crop_flip=True)))
    assert teacher.alphas == [None] and teacher.epochs == 3 and teacher.augment.crop_padding == 4
    cfg = PruneConfig(
        epochs=6,
        finetune_epochs=2,
        schedule={"kind": "linear", "steps": 2},
        advance={"mode": "batch"},
        optimizer={"lr": 0.003},
        loss={"kind": "kd"},
    )
    spec = engine.prune_spec(cfg, fingerprint="f")
    # batch mode: each of the 4 α > 0 epochs a step, α moving toward 0.5 at every batch
    assert spec.alphas == [0.5, 0.5, 0.5, 0.5, 0.0] and spec.step_epochs == [1, 1, 1, 1]
    assert spec.batch_anneal == [0.5] and spec.needs_teacher and spec.fingerprint == "f"
    assert spec.optimizer == Optimizer(lr=0.003, grad_clip=5.0)


def test_a_model_a_program_registers_can_be_named_in_params(monkeypatch):
    """The schema spells out the built-in names (it imports no torch), and reads the registry of
    a program that imported alphaprune.models to register its own."""
    from alphaprune.models import MODELS
    from alphaprune.pipeline.params.schema import ModelConfig

    with pytest.raises(ValueError, match="unknown model 'mine'"):
        ModelConfig(name="mine")
    monkeypatch.setitem(MODELS, "mine", lambda **kw: None)
    assert ModelConfig(name="mine").name == "mine"
