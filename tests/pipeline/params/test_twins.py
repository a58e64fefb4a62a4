"""One-shot twins: the twin of a recipe, recipes that train alike, pairs in a grid, and twins
declared with a YAML merge key as both tools read them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pipeline_helpers import SEED

from alphaprune.pipeline.params import twins
from alphaprune.pipeline.params.loader import load_params, resolve
from alphaprune.pipeline.params.recipe import PruneConfig

ROOT = Path(__file__).resolve().parents[3]


def _grid(**variants) -> dict:
    return {"prune": {**SEED, "epochs": 8, "finetune_epochs": 2}, "variants": variants}


def test_the_twin_is_the_recipe_with_alpha_zero_from_the_start():
    cfg = PruneConfig(schedule={"kind": "exponential"})  # the defaults, annealed
    twin = twins.twin(cfg)
    assert twin.schedule.kind == "oneshot" and twin.alphas() == [0.0]
    assert twin.model_dump(exclude={"schedule"}) == cfg.model_dump(exclude={"schedule"})
    assert twins.annealed(cfg) and not twins.annealed(twin)
    assert twins.twin(twin) == twin


@pytest.mark.parametrize(
    ("anneal", "oneshot"),
    [
        # the twin fine-tunes from finetune_lr: a one-shot recipe at that lr trains alike
        (
            {"optimizer": {"lr": 0.005}, "finetune_lr": 0.02},
            {"schedule": {"kind": "oneshot"}, "optimizer": {"lr": 0.02}},
        ),
        # one cosine over the prune: its twin is the one-shot fine-tune from optimizer.lr
        ({"lr_schedule": "cosine"}, {"schedule": {"kind": "oneshot"}}),
        # what trains at α = 0 is what a one-shot recipe trains
        (
            {"trainable": "branches", "finetune_trainable": "student"},
            {"schedule": {"kind": "oneshot"}, "trainable": "student"},
        ),
        # keys that act only while α > 0 do nothing to a one-shot recipe
        (
            {"advance": {"mode": "batch"}, "layer_distill": 1.0, "finetune_epochs": 3},
            {"schedule": {"kind": "oneshot"}},
        ),
    ],
    ids=["finetune-lr", "one-cosine", "finetune-trainable", "anneal-only-keys"],
)
def test_a_oneshot_variant_that_trains_as_the_twin_is_found(anneal, oneshot):
    params = resolve(_grid(anneal=anneal, other={"init": "lsq", **oneshot}, twin=oneshot))
    assert twins.pairs(params) == {"anneal": "twin"}


@pytest.mark.parametrize(
    "oneshot",
    [
        {"init": "lsq"},  # another init
        {"branch": "lowrank"},
        {"recalibrate_bn": 10},
        {"optimizer": {"lr": 0.5}},  # another fine-tune lr
        {"epochs": 9},  # another budget
        {"loss": {"kind": "kd"}},
    ],
    ids=lambda o: next(iter(o)),
)
def test_a_oneshot_variant_that_trains_otherwise_is_no_twin(oneshot):
    params = resolve(_grid(anneal={}, near={"schedule": {"kind": "oneshot"}, **oneshot}))
    assert twins.pairs(params) == {"anneal": None}


def test_the_default_grid_pairs_the_schedules_with_oneshot():
    pairs = twins.pairs(load_params(ROOT / "params.yaml"))
    assert {a for a, t in pairs.items() if t == "oneshot"} == {
        "seed",
        "plateau",
        "exp02",
        "linear",
        "cosine",
    }
    # one-shot themselves
    assert not {"oneshot", "magnitude", "recommended", "torch_pruning"} & set(pairs)
    # every other anneal has a twin of its own, named after it
    assert {a: t for a, t in pairs.items() if t != "oneshot"} == {
        a: f"{a}_oneshot"
        for a in (
            "noise50",
            "noise20",
            "regression",
            "init_pretrained",
            "init_lsq",
            "unfrozen",
            "lowrank",
            "sparse",
            "channels",
        )
    }


def test_the_cifar_cpu_preset_twins_every_anneal():
    configs = ROOT / "configs"
    params = load_params(
        [ROOT / "params.yaml", configs / "cifar10-cpu.yaml", configs / "shared-jpeg.yaml"]
    )
    assert twins.pairs(params) == {
        "baseline": "oneshot",
        "init_lsq": "init_lsq_oneshot",
        "unfrozen": "unfrozen_oneshot",
    }


def test_the_declared_line_makes_the_twin_and_follows_its_recipe(tmp_path):
    recipe = "{branch: lowrank, init: lsq, optimizer: {lr: 0.005}, finetune_lr: 0.02}"
    text = (
        "prune: {epochs: 8, finetune_epochs: 2, schedule: {kind: exponential}}\n"
        f"variants:\n  adapt: &adapt {recipe}\n  {twins.declaration('adapt')}\n"
    )
    path = tmp_path / "params.yaml"
    path.write_text(text)
    params = load_params(path)
    assert twins.pairs(params) == {"adapt": "adapt_oneshot"}
    assert params.variant("adapt_oneshot") == twins.twin(params.variant("adapt"))
    # an edit of the recipe is an edit of its twin
    path.write_text(text.replace("init: lsq", "init: pretrained"))
    edited = load_params(path)
    assert edited.variant("adapt_oneshot").init == "pretrained"
    assert twins.pairs(edited) == {"adapt": "adapt_oneshot"}


def test_dvc_reads_a_declared_twin_as_its_whole_recipe(tmp_path):
    """DVC hashes `variants.<twin>` for the twin's prune stage: it must see the merged recipe,
    so that editing the anchored recipe reruns the twin too."""
    from dvc.utils.serialize import load_yaml

    path = tmp_path / "params.yaml"
    path.write_text(
        "variants:\n  adapt: &adapt {branch: lowrank, init: lsq}\n"
        f"  {twins.declaration('adapt')}\n"
    )
    assert load_yaml(path)["variants"]["adapt_oneshot"] == {
        "branch": "lowrank",
        "init": "lsq",
        "schedule": {"kind": "oneshot"},
    }
    assert yaml.safe_load(path.read_text()) == load_yaml(path)


def test_the_cifar_anneal_presets_pair_every_anneal_with_its_twin():
    configs = ROOT / "configs"
    base = [ROOT / "params.yaml", configs / "cifar10-cpu.yaml", configs / "shared-jpeg.yaml"]
    long = load_params([*base, configs / "cifar10-long.yaml"])
    screen = load_params([*base, configs / "cifar10-long.yaml", configs / "cifar10-screen.yaml"])
    assert twins.pairs(long) == {
        "long_adapt": "long_adapt_oneshot",
        "long_adapt_lowlr": "long_adapt_oneshot",
        "long_short": "long_adapt_oneshot",
    }
    assert all(twins.pairs(screen).values())
    harder = load_params([*base, configs / "cifar10-long.yaml", configs / "cifar10-harder.yaml"])
    assert twins.pairs(harder) == {"hard80": "hard80_oneshot", "svd_init": "svd_init_oneshot"}
    # the same anneal as long_adapt, at another amount or init
    for name, change in (("hard80", {"amount": 0.8}), ("svd_init", {"init": "pretrained"})):
        assert harder.variant(name) == long.variant("long_adapt").model_copy(update=change)
    assert twins.pairs(screen)["long_kd"] == "long_kd_oneshot"
    # the screen's runs of the long preset's variants are the same runs (shared, not redone)
    for name in ("long_adapt", "long_short", "long_adapt_oneshot"):
        assert screen.variant(name) == long.variant(name)
    assert screen.prune == long.prune


def test_a_set_on_one_merged_variant_leaves_the_others_alone(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "variants:\n  adapt: &adapt {advance: {mode: batch}, optimizer: {lr: 0.005}}\n"
        f"  {twins.declaration('adapt')}\n  other: {{<<: *adapt, init: lsq}}\n"
    )
    params = load_params(path, ["variants.adapt_oneshot.optimizer.lr=0.1"])
    assert params.variant("adapt_oneshot").optimizer.lr == 0.1
    assert params.variant("adapt").optimizer.lr == params.variant("other").optimizer.lr == 0.005
    params = load_params(path, ["variants.adapt.advance.mode=plateau"])
    assert params.variant("adapt").advance.mode == "plateau"
    assert params.variant("other").advance.mode == "batch"


def test_a_schedule_with_no_alpha_above_zero_is_one_shot():
    params = resolve(
        _grid(
            anneal={},
            step0={"schedule": {"kind": "step", "values": [0.0]}},
            twin={"schedule": {"kind": "oneshot"}},
        )
    )
    assert not twins.annealed(params.variant("step0"))
    assert twins.pairs(params) == {"anneal": "step0"}  # the first that trains as the twin


@pytest.mark.parametrize(
    "presets",
    [
        [],
        ["cifar10-cpu.yaml", "shared-jpeg.yaml"],
        ["cifar10-cpu.yaml", "shared-jpeg.yaml", "cifar10-ablation.yaml"],
        ["cifar10-cpu.yaml", "shared-jpeg.yaml", "cifar10-long.yaml"],
        ["cifar10-cpu.yaml", "shared-jpeg.yaml", "cifar10-long.yaml", "cifar10-screen.yaml"],
        ["cifar10-cpu.yaml", "shared-jpeg.yaml", "cifar10-long.yaml", "cifar10-harder.yaml"],
        ["cifar10-cpu.yaml", "shared-jpeg.yaml", "cifar10-long.yaml", "cifar10-channels.yaml"],
        ["cifar10-resnet56.yaml"],
        ["cifar10-vgg16.yaml"],
    ],
    ids=lambda presets: "+".join(p.removesuffix(".yaml") for p in presets) or "default",
)
def test_every_anneal_of_the_default_grid_and_the_cifar_presets_has_its_twin(presets):
    params = load_params([ROOT / "params.yaml", *(ROOT / "configs" / p for p in presets)])
    pairs = twins.pairs(params)
    assert pairs and all(pairs.values()), [a for a, t in pairs.items() if not t]


def test_a_block_fade_is_twinned_by_the_same_blocks_dropped_at_once():
    """Blocks: the calibration batch that chooses them counts (another batch, perhaps other
    blocks); the init does not (a block's shortcut is the teacher's)."""
    fade = {"branch": "blocks", "trainable": "student", "calibration_size": 256}
    params = resolve(
        _grid(
            anneal=fade,
            other_batch={**fade, "schedule": {"kind": "oneshot"}, "calibration_size": 128},
            twin={**fade, "schedule": {"kind": "oneshot"}, "init": "random"},
        )
    )
    assert twins.pairs(params) == {"anneal": "twin"}
