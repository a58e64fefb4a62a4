"""The params schema: the repository's params.yaml loads, defaults fill in, variants deep-merge
over `prune`, `--set` overrides apply, and every bad input ends in one line that names the file
and the full key path."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import preset_recipes
import pytest
import yaml
from pipeline_helpers import SEED

from alphaprune.pipeline.params.base import ConfigError
from alphaprune.pipeline.params.loader import deep_merge, load_params, resolve
from alphaprune.pipeline.params.recipe import ExponentialSchedule, LinearSchedule, PruneConfig
from alphaprune.pipeline.params.retired import RETIRED_KEYS
from alphaprune.pipeline.params.schema import Params

REPO_PARAMS = Path(__file__).resolve().parents[3] / "params.yaml"

BASE = {
    "seed": 0,
    "data": {"name": "digits"},
    "model": {"name": "cnn"},
    "teacher": {
        "epochs": 20,
        "batch_size": 64,
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    },
    "prune": {
        **SEED,
        "amount": 0.65,
        "schedule": {"kind": "exponential", "rate": 0.05, "alpha_min": 0.07},
        "advance": {"patience": 1, "min_epochs": 1, "max_epochs": 3},
        "epochs": 80,
        "finetune_epochs": 10,
        "optimizer": {"lr": 0.02, "momentum": 0.8},
    },
    "variants": {"seed": {}},
}


def _write(tmp_path: Path, raw, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _raw(**variants) -> dict:
    raw = copy.deepcopy(BASE)
    if variants:
        raw["variants"] = variants
    return raw


# ------------------------------------------------------------------------- the repo's file
def test_repository_params_load_and_defaults_fill_in():
    params = load_params(REPO_PARAMS)
    assert isinstance(params, Params)
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    assert params.prune.amount == raw["prune"]["amount"] == 0.65
    assert params.model.name == raw["model"]["name"]
    assert set(params.variants) == set(raw["variants"])
    # Keys the file does not write come from the schema's defaults.
    assert params.data.val_fraction == 0.1
    assert params.data.subset is None
    assert params.prune.loss.kind == "ce"
    assert params.prune.calibration_size == 512
    assert params.runtime.device == "auto"
    assert params.eval.noise_std == 0.5


def test_defaults_of_a_file_with_only_a_variant(tmp_path):
    path = tmp_path / "minimal.yaml"
    path.write_text("variants: {v: {}}\n")
    params = load_params(path)
    assert params.model_copy(update={"variants": {}}) == Params()
    assert params.prune.amount == 0.65
    # a run that sets nothing gets the best measured recipe, params.yaml's `recommended`
    assert params.variants == {"v": params.prune}
    repo = load_params(REPO_PARAMS)
    recipe = ["amount", "target", "branch", "init", "trainable", "recalibrate_bn", "schedule"]
    for cfg in (params.prune, repo.prune):
        assert cfg.model_dump(include=set(recipe)) == repo.variant("recommended").model_dump(
            include=set(recipe)
        )


def test_an_empty_file_has_no_variants_to_run(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(ConfigError, match=r"empty\.yaml: variants: define at least one variant"):
        load_params(path)


def test_configs_are_frozen():
    params = resolve(_raw(), "p")
    with pytest.raises(ValueError):
        params.prune.amount = 0.5  # type: ignore[misc]


def test_unknown_variant_lookup_names_the_known_ones():
    params = resolve(_raw(a={}, b={}), "p")
    with pytest.raises(ConfigError, match="unknown variant 'c'.*a, b"):
        params.variant("c")


# ------------------------------------------------------------------------------- variants
def test_empty_variant_equals_prune():
    params = resolve(_raw(same={}, none=None), "p")
    assert params.variant("same") == params.prune
    assert params.variant("none") == params.prune


def test_variant_schedule_rate_keeps_kind_and_alpha_min():
    params = resolve(_raw(exp02={"schedule": {"rate": 0.02}}), "p")
    v = params.variant("exp02")
    assert v.schedule == ExponentialSchedule(rate=0.02, alpha_min=0.07)
    assert params.prune.schedule.rate == 0.05  # the base is untouched
    # Everything the variant does not name comes from prune.
    assert v.epochs == 80 and v.finetune_epochs == 10 and v.advance.max_epochs == 3


def test_variant_optimizer_lr_keeps_momentum():
    params = resolve(_raw(fast={"optimizer": {"lr": 0.1}}), "p")
    opt = params.variant("fast").optimizer
    assert opt.lr == 0.1
    assert opt.momentum == 0.8
    assert params.prune.optimizer.lr == 0.02


def test_variant_switching_schedule_kind_is_replaced_whole():
    params = resolve(_raw(lin={"schedule": {"kind": "linear", "steps": 5}}), "p")
    assert params.variant("lin").schedule == LinearSchedule(kind="linear", steps=5)
    assert params.variant("lin").alphas() == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])


def test_variant_same_kind_named_explicitly_still_merges():
    params = resolve(_raw(v={"schedule": {"kind": "exponential", "rate": 0.2}}), "p")
    assert params.variant("v").schedule == ExponentialSchedule(rate=0.2, alpha_min=0.07)


def test_variants_are_independent():
    params = resolve(_raw(a={"amount": 0.5}, b={"branch": "lowrank"}), "p")
    assert params.variant("a").amount == 0.5 and params.variant("a").branch == "pointwise"
    assert params.variant("b").amount == 0.65 and params.variant("b").branch == "lowrank"


def test_deep_merge():
    base = {"a": 1, "s": {"kind": "x", "p": 1, "q": 2}, "n": {"m": {"k": 1, "j": 2}}}
    frozen = copy.deepcopy(base)
    out = deep_merge(base, {"s": {"p": 5}, "n": {"m": {"k": 9}}, "new": [1]})
    assert out == {
        "a": 1,
        "s": {"kind": "x", "p": 5, "q": 2},
        "n": {"m": {"k": 9, "j": 2}},
        "new": [1],
    }
    assert base == frozen  # inputs are not mutated
    # A different kind replaces the mapping; a non-mapping replaces a mapping and vice versa.
    assert deep_merge(base, {"s": {"kind": "y", "r": 3}})["s"] == {"kind": "y", "r": 3}
    assert deep_merge(base, {"n": 3})["n"] == 3
    assert deep_merge({"n": 3}, {"n": {"a": 1}})["n"] == {"a": 1}
    # The result does not alias the override either.
    override = {"l": [1, 2]}
    merged = deep_merge({}, override)
    merged["l"].append(3)
    assert override == {"l": [1, 2]}


# ----------------------------------------------------------------------------- bad inputs
def _set(*path_and_value):
    *path, value = path_and_value

    def mutate(raw: dict) -> None:
        node = raw
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    return mutate


def _all(*mutations):
    def mutate(raw: dict) -> None:
        for m in mutations:
            m(raw)

    return mutate


LATENCY_VARIANT = {"branch": "channels", "init": "pretrained", "target": "latency"}

BAD = [
    # (id, mutation, key path in the message, a fragment the message must contain)
    (
        "variant-rate-above-1",
        _set("variants", "seed", {"schedule": {"rate": 1.5}}),
        "variants.seed.schedule.rate",
        "1.5",
    ),
    ("amount-0", _set("prune", "amount", 0), "prune.amount", "greater than 0"),
    ("amount-1.5", _set("prune", "amount", 1.5), "prune.amount", "less than 1"),
    ("teacher-lr-0", _set("teacher", "optimizer", "lr", 0), "teacher.optimizer.lr", "0"),
    ("prune-lr-0", _set("prune", "optimizer", "lr", 0), "prune.optimizer.lr", "0"),
    ("unknown-dataset", _set("data", "name", "mnist"), "data.name", "mnist"),
    ("image-size-0", _set("data", "image_size", 0), "data.image_size", "equal to 1"),
    ("jobs-per-gpu-0", _set("runtime", "jobs_per_gpu", 0), "runtime.jobs_per_gpu", "greater"),
    ("unknown-model", _set("model", "name", "resnet21"), "model.name", "resnet21"),
    ("unknown-top-key", _set("bogus", 1), "bogus", "unknown key"),
    (
        "unknown-nested-key",
        _set("prune", "advance", "bogus", 1),
        "prune.advance.bogus",
        "unknown key",
    ),
    (
        "unknown-variant-key",
        _set("variants", "seed", {"bogus": 1}),
        "variants.seed.bogus",
        "unknown key",
    ),
    (
        "unknown-variant-schedule-key",
        _set("variants", "seed", {"schedule": {"bogus": 1}}),
        "variants.seed.schedule.bogus",
        "unknown key",
    ),
    ("string-for-int", _set("teacher", "epochs", "ten"), "teacher.epochs", "integer"),
    ("negative-epochs", _set("teacher", "epochs", -1), "teacher.epochs", "-1"),
    ("negative-prune-epochs", _set("prune", "epochs", -5), "prune.epochs", "-5"),
    ("batch-size-0", _set("prune", "batch_size", 0), "prune.batch_size", "0"),
    # α = 0 always keeps at least one epoch (0 used to crash after the whole α > 0 phase).
    ("finetune-0", _set("prune", "finetune_epochs", 0), "prune.finetune_epochs", "0"),
    ("unknown-branch", _set("prune", "branch", "dense"), "prune.branch", "dense"),
    ("unknown-init", _set("prune", "init", "zeros"), "prune.init", "zeros"),
    ("unknown-trainable", _set("prune", "trainable", "none"), "prune.trainable", "none"),
    (
        "unknown-schedule",
        _set("prune", "schedule", {"kind": "sigmoid"}),
        "prune.schedule",
        "sigmoid",
    ),
    ("unknown-loss", _set("prune", "loss", {"kind": "mse"}), "prune.loss", "mse"),
    (
        "variant-unknown-branch",
        _set("variants", "seed", {"branch": "dense"}),
        "variants.seed.branch",
        "dense",
    ),
    (
        "variant-kd-temperature-0",
        _set("variants", "seed", {"loss": {"kind": "kd", "temperature": 0}}),
        "variants.seed.loss.temperature",
        "greater than 0",
    ),
    (
        "variant-linear-steps-0",
        _set("variants", "seed", {"schedule": {"kind": "linear", "steps": 0}}),
        "variants.seed.schedule.steps",
        "0",
    ),
    ("variant-uppercase", _set("variants", "Exp05", {}), "variants.Exp05", "lowercase"),
    ("variant-space", _set("variants", "exp 05", {}), "variants.exp 05", "lowercase"),
    ("finetune-ge-epochs", _set("prune", "finetune_epochs", 80), "prune", "finetune_epochs"),
    (
        "variant-finetune-ge-epochs",
        _set("variants", "seed", {"epochs": 10}),
        "variants.seed",
        "finetune_epochs",
    ),
    (
        "sparse-lsq",
        _set("variants", "seed", {"branch": "sparse", "init": "lsq"}),
        "variants.seed",
        "lsq",
    ),
    (
        "sparse-macs",
        _set("variants", "seed", {"branch": "sparse", "target": "macs"}),
        "variants.seed",
        "runs densely",
    ),
    ("unknown-target", _set("prune", "target", "flops"), "prune.target", "flops"),
    (
        "latency-target-of-another-branch",
        _set("variants", "seed", {"target": "latency"}),
        "variants.seed",
        "branches 'channels' and 'blocks+channels' only",
    ),
    (
        "random-init-of-blocks-and-channels",
        _set(
            "variants",
            "seed",
            {"branch": "blocks+channels", "init": "random", "trainable": "student"},
        ),
        "variants.seed",
        "init 'random' is not supported for branch 'blocks+channels'",
    ),
    (
        "dropped-blocks-of-another-branch",
        _set("variants", "seed", {"dropped_blocks": 2}),
        "variants.seed",
        "dropped_blocks applies to branch 'blocks+channels' only",
    ),
    (
        "trainable-branches-of-blocks-and-channels",
        _set("variants", "seed", {"branch": "blocks+channels", "trainable": "branches"}),
        "variants.seed",
        "trainable 'branches' does not apply to branch 'blocks+channels'",
    ),
    (
        "ranking-of-a-params-target",
        _set("variants", "seed", {"ranking": "global"}),
        "variants.seed",
        "ranking applies to target 'latency' only",
    ),
    (
        "latency-target-without-a-table",
        _set("variants", "seed", LATENCY_VARIANT),
        "variants.seed.target",
        "set latency.table ({} for the defaults)",
    ),
    (
        "latency-target-at-other-widths-than-the-table",
        _all(_set("variants", "seed", LATENCY_VARIANT), _set("latency", "table", {"round_to": 4})),
        "variants.seed.round_to",
        "8 differs from latency.table.round_to 4",
    ),
    (
        "latency-target-with-other-layers-than-the-table",
        _all(
            _set("variants", "seed", LATENCY_VARIANT),
            _set("latency", "table", {"exclude": ["fc*"]}),
        ),
        "variants.seed.exclude",
        "differs from latency.table.exclude",
    ),
    (
        "latency-table-at-a-batch-the-latency-stage-does-not-time",
        _set("latency", "table", {"batch": 16}),
        "latency",
        "table.batch 16 is neither latency.batch (1) nor latency.throughput_batch (64)",
    ),
    (
        "variant-batch-that-does-not-split-over-the-processes",
        _all(_set("runtime", "processes", 2), _set("variants", "seed", {"batch_size": 63})),
        "variants.seed.batch_size",
        "63 does not split evenly over runtime.processes 2",
    ),
    (
        "unknown-lr-schedule",
        _set("variants", "seed", {"lr_schedule": "step"}),
        "variants.seed.lr_schedule",
        "step",
    ),
    (
        "one-cosine-with-finetune-lr",
        _set("variants", "seed", {"lr_schedule": "cosine", "finetune_lr": 0.02}),
        "variants.seed",
        "unset one of them",
    ),
    (
        "noise-without-std",
        _set("teacher", "augment", {"noise_fraction": 0.5}),
        "teacher.augment",
        "noise_std",
    ),
    (
        "prune-noise-without-std",
        _set("prune", "augment", {"noise_fraction": 0.5, "noise_std": 0}),
        "prune.augment",
        "noise_std",
    ),
    ("min-gt-max-epochs", _set("prune", "advance", "min_epochs", 5), "prune.advance", "min_epochs"),
    (
        "variant-min-gt-max-epochs",
        _set("variants", "seed", {"advance": {"min_epochs": 5}}),
        "variants.seed.advance",
        "min_epochs (5) > max_epochs (3)",
    ),
    (
        "variant-max-epochs-0",
        _set("variants", "seed", {"advance": {"max_epochs": 0}}),
        "variants.seed.advance.max_epochs",
        "0",
    ),
    (
        "noise-fraction-above-1",
        _set("prune", "augment", {"noise_fraction": 2, "noise_std": 1}),
        "prune.augment.noise_fraction",
        "2",
    ),
    ("section-not-mapping", _set("data", "digits"), "data", "digits"),
    ("variants-not-mapping", _set("variants", ["seed"]), "variants", "mapping"),
    ("variant-not-mapping", _set("variants", "seed", [1]), "variants.seed", "mapping"),
    ("negative-seed", _set("seed", -1), "seed", "-1"),
    # keys an earlier release read: still refused, with what replaced them and since when
    (
        "removed-eval-latency-seconds",
        _set("eval", {"latency_seconds": 0.2}),
        "eval.latency_seconds",
        "removed in alphaprune 0.2.0, use latency.seconds instead",
    ),
    (
        "removed-eval-latency-batch",
        _set("eval", {"latency_batch": 4}),
        "eval.latency_batch",
        "removed in alphaprune 0.2.0, use latency.batch and latency.throughput_batch instead",
    ),
    (
        "removed-eval-latency-repeats",
        _set("eval", {"latency_repeats": 50}),
        "eval.latency_repeats",
        "use latency.seconds",
    ),
]


@pytest.mark.parametrize(
    ("mutate", "key_path", "fragment"), [pytest.param(*case[1:], id=case[0]) for case in BAD]
)
def test_bad_input_is_one_line_naming_file_and_key_path(tmp_path, mutate, key_path, fragment):
    raw = _raw()
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        load_params(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {key_path}: "), msg
    assert fragment in msg.removeprefix(f"{path}: {key_path}: ")


@pytest.mark.parametrize("key", RETIRED_KEYS)
def test_a_retired_key_is_not_in_the_schema_and_its_successors_are(key):
    """The table stays true: the old key is refused (its error is the table's), and every key
    the error tells users to write instead is one the schema takes."""
    old = RETIRED_KEYS[key]
    *parents, name = key.split(".")
    with pytest.raises(ConfigError, match=f"{key}: removed in alphaprune {old.release}"):
        resolve(_nested(parents, {name: 1}) | {"variants": {"a": {}}})
    for successor in old.replaced_by.split(" and "):
        *parents, name = successor.split(".")
        default = _lookup(Params(), successor)
        resolve(_nested(parents, {name: default}) | {"variants": {"a": {}}})


def _nested(parents: list[str], leaf: dict) -> dict:
    for part in reversed(parents):
        leaf = {part: leaf}
    return leaf


def _lookup(obj, path: str):
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def test_a_retired_prune_key_is_named_in_a_variant_too(monkeypatch):
    from alphaprune.pipeline.params import retired

    monkeypatch.setitem(
        retired.RETIRED_KEYS, "prune.old_rate", retired.Retired("9.9", "prune.schedule.rate", "x")
    )
    with pytest.raises(ConfigError) as info:
        resolve({"variants": {"a": {"old_rate": 0.1}}}, "p.yaml")
    assert str(info.value).startswith("p.yaml: variants.a.old_rate: removed in alphaprune 9.9")


def test_the_discriminator_tag_is_not_in_the_key_path(tmp_path):
    """pydantic locates `schedule.exponential.rate`; users wrote `schedule.rate`."""
    raw = _raw(schedule={"schedule": {"rate": 0}})  # a variant named like the key, too
    raw["prune"]["schedule"]["alpha_min"] = 2
    with pytest.raises(ConfigError) as info:
        resolve(raw, "p.yaml")
    assert str(info.value).startswith("p.yaml: prune.schedule.alpha_min: ")
    raw["prune"]["schedule"]["alpha_min"] = 0.05
    with pytest.raises(ConfigError) as info:
        resolve(raw, "p.yaml")
    assert str(info.value).startswith("p.yaml: variants.schedule.schedule.rate: ")


def test_several_errors_stay_on_one_line():
    raw = _raw()
    raw["prune"]["amount"] = 2
    raw["prune"]["batch_size"] = 0
    with pytest.raises(ConfigError) as info:
        resolve(raw, "p.yaml")
    msg = str(info.value)
    assert "\n" not in msg
    assert "prune.amount" in msg and "prune.batch_size" in msg


@pytest.mark.parametrize("name", ["seed\n", "a\nb"])
def test_variant_name_with_a_newline_is_rejected_on_one_line(name):
    """Variant names become paths and stage names. `VARIANT_NAME.match` with `$` also accepts
    a name ending in a newline, and the rejection message prints the name raw."""
    raw = _raw(**{name: {}})
    with pytest.raises(ConfigError) as info:
        resolve(raw, "p.yaml")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("p.yaml: variants.")


def test_the_teachers_name_is_not_a_variant_name():
    with pytest.raises(ConfigError, match="variants.teacher: the name is reserved"):
        resolve(_raw(teacher={}), "p.yaml")


@pytest.mark.parametrize(
    ("schedule", "fragment"),
    [
        ({"kind": "step", "values": [0.5, 0.7]}, "decreasing"),
        ({"kind": "step", "values": []}, "values"),
        ({"kind": "step", "values": [1.5, 0.5]}, "values"),
        ({"kind": "exponential", "rate": 1e-9}, "rate"),
    ],
    ids=["step-increasing", "step-empty", "step-above-1", "exponential-too-many-stages"],
)
def test_schedule_that_yields_no_alpha_sequence_is_rejected_at_load(schedule, fragment):
    """A schedule the schedules module rejects must fail when params are read, naming the
    key path, not later as a bare ValueError from `PruneConfig.alphas()` in the prune stage."""
    with pytest.raises(ConfigError) as info:
        resolve(_raw(v={"schedule": schedule}), "p.yaml")
    msg = str(info.value)
    assert msg.startswith("p.yaml: variants.v.schedule") and fragment in msg
    assert "\n" not in msg


# ---------------------------------------------------------------------- --set, file errors
def test_set_overrides_take_effect(tmp_path):
    path = _write(tmp_path, _raw())
    params = load_params(
        path,
        [
            "prune.amount=0.5",
            "variants.seed.schedule.rate=0.1",
            "teacher.optimizer.name=adamw",
            "data.subset=100",
        ],
    )
    assert params.prune.amount == 0.5
    assert params.variant("seed").amount == 0.5  # the variant merges over the new prune
    assert params.variant("seed").schedule == ExponentialSchedule(rate=0.1, alpha_min=0.07)
    assert params.prune.schedule.rate == 0.05
    assert params.teacher.optimizer.name == "adamw"
    assert params.data.subset == 100


def test_set_can_create_a_variant_and_new_sections(tmp_path):
    path = _write(tmp_path, {"model": {"name": "cnn"}})
    params = load_params(
        path, ["variants.lin.schedule={kind: linear, steps: 4}", "runtime.device=cpu"]
    )
    assert params.variant("lin").schedule == LinearSchedule(kind="linear", steps=4)
    assert params.runtime.device == "cpu"


def test_set_into_a_variant_written_as_null(tmp_path):
    """`seed:` (no value) is a valid empty variant, so `--set variants.seed.x=…` (what
    `dvc exp run -S` passes) must work on it as it does on `seed: {}`."""
    path = tmp_path / "params.yaml"
    path.write_text("variants:\n  seed:\n")
    params = load_params(path, ["variants.seed.amount=0.5"])
    assert params.variant("seed").amount == 0.5


def test_set_with_a_bad_value_names_the_key_path(tmp_path):
    path = _write(tmp_path, _raw())
    with pytest.raises(ConfigError) as info:
        load_params(path, ["variants.seed.schedule.rate=1.5"])
    assert str(info.value).startswith(f"{path}: variants.seed.schedule.rate: ")


@pytest.mark.parametrize("text", ["prune.amount", "=0.5"])
def test_malformed_set_override(tmp_path, text):
    path = _write(tmp_path, _raw())
    with pytest.raises(ConfigError, match="key.path=value") as info:
        load_params(path, [text])
    assert "\n" not in str(info.value)


def test_set_through_a_scalar_is_refused(tmp_path):
    path = _write(tmp_path, _raw())
    with pytest.raises(ConfigError, match="amount is not a mapping"):
        load_params(path, ["prune.amount.x=1"])


def test_later_files_merge_over_earlier_ones(tmp_path):
    base = _write(tmp_path, _raw(), "params.yaml")
    preset = _write(tmp_path, {"prune": {"amount": 0.4, "optimizer": {"lr": 0.3}}}, "p.yaml")
    params = load_params([base, preset])
    assert params.prune.amount == 0.4
    assert params.prune.optimizer.lr == 0.3 and params.prune.optimizer.momentum == 0.8
    bad = _write(tmp_path, {"prune": {"amount": 3}}, "bad.yaml")
    with pytest.raises(ConfigError) as info:
        load_params([base, bad])
    assert str(bad) in str(info.value) and "prune.amount" in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("- a\n- b\n", "expected a mapping"),
        ("prune: [1, 2\n", "not valid YAML"),
        ("just a string\n", "expected a mapping"),
        ("a: b: c\n", "not valid YAML"),
    ],
    ids=["list", "unclosed", "scalar", "nested-colon"],
)
def test_unusable_yaml_names_the_file(tmp_path, text, fragment):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_params(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ") and fragment in msg
    assert "\n" not in msg


def test_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert str(info.value) == f"{path}: no such file"


def test_resolve_rejects_a_non_mapping():
    with pytest.raises(ConfigError, match="^src: expected a mapping at the top level, got list"):
        resolve(["a"], "src")


# ------------------------------------------------------------------------------- schedules
@pytest.mark.parametrize(
    "schedule",
    [
        {"kind": "exponential", "rate": 0.3, "alpha_min": 0.1},
        {"kind": "linear", "steps": 3},
        {"kind": "cosine", "steps": 4},
        {"kind": "step", "values": [0.9, 0.5]},
        {"kind": "oneshot"},
    ],
    ids=["exponential", "linear", "cosine", "step", "oneshot"],
)
def test_alphas_start_below_one_and_end_at_zero(schedule):
    alphas = PruneConfig(schedule=schedule).alphas()
    assert alphas[0] < 1
    assert alphas[-1] == 0.0
    assert all(a > b for a, b in zip(alphas, alphas[1:], strict=False))


def test_default_exponential_alphas():
    alphas = PruneConfig(schedule={"kind": "exponential"}).alphas()
    assert alphas[:2] == pytest.approx([0.95, 0.95**2])
    assert min(a for a in alphas if a > 0) >= 0.05
    assert alphas[-1] == 0.0


PRESETS = sorted((REPO_PARAMS.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_every_preset_is_valid_over_params_yaml(preset):
    params = load_params([REPO_PARAMS, preset])
    assert params.variants  # each preset keeps or defines a grid
    raw = yaml.safe_load(preset.read_text())
    if "model" in raw:
        assert params.model.name == raw["model"]["name"]
    if "data" in raw:
        assert params.data.name == raw["data"]["name"]


def test_the_presets_with_results_keep_their_recipes():
    """docs/results.md's tables name variants of these presets: a change to params.yaml's
    defaults (or to a preset) must not change what any of them trains."""
    golden = json.loads(preset_recipes.GOLDEN.read_text())
    now = preset_recipes.resolved()
    assert now.keys() == golden.keys()
    for stack, variants in golden.items():
        for name, recipe in variants.items():
            assert now[stack].get(name) == recipe, (
                f"{stack}: variant {name} changed; if on purpose, rerun "
                "tests/pipeline/preset_recipes.py"
            )


def test_torch_pruning_is_channels_put_in_at_once_from_the_teachers_weights():
    """In the default grid and every CIFAR-10 preset that compares recipes (not the studies
    of one question: ablation, long, screen, harder): Torch-Pruning's recipe (whose channel
    choice tests/test_channels.py checks against Torch-Pruning itself), fine-tuned whole."""
    configs = REPO_PARAMS.parent / "configs"
    grids = [[], ["cifar10-cpu"], ["cifar10-resnet56"], ["cifar10-vgg16"]]
    grids.append(preset_recipes.STACKS["channels"])
    for presets in grids:
        params = load_params([REPO_PARAMS] + [configs / f"{p}.yaml" for p in presets])
        cfg = params.variant("torch_pruning")
        assert (cfg.branch, cfg.init, cfg.trainable, cfg.schedule.kind) == (
            "channels",
            "pretrained",
            "student",
            "oneshot",
        )
        assert (cfg.recalibrate_bn, cfg.round_to, cfg.target) == (0, 1, "params"), presets
