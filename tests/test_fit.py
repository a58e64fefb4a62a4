"""The fit loop through the prune stage on digits: improvement, α sequence, epoch budget,
resume, divergence."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from alphaprune import blend
from alphaprune.batches import predict
from alphaprune.fit import DivergenceError
from alphaprune.loading import load_model
from alphaprune.pipeline.data.prepared import load_data
from alphaprune.pipeline.params.loader import resolve
from alphaprune.pipeline.stages.engine import splits
from alphaprune.pipeline.stages.prune import make_student, prune
from alphaprune.runtime import Runtime
from conftest import TINY
from conftest import tiny_params as tiny_config

# 63 tests of a second or so each: about 100 s on a 2-core machine, one unit for pytest-xdist
pytestmark = pytest.mark.slow(seconds=100)

CPU = Runtime(torch.device("cpu"))


def _prune(params, variant, prepared_path, teacher_dir, out, **kw):
    return prune(params, variant, prepared_path, teacher_dir / "model.pt", out, **kw)


def test_teacher_learns(teacher_dir):
    metrics = pd.read_json(teacher_dir / "metrics.json", typ="series")
    assert metrics["test_acc"] > 0.93
    assert metrics["epochs"] == 6


def test_prune_improves_over_alpha_zero_at_init(tiny_params, prepared_path, teacher_dir, tmp_path):
    params = tiny_params(base={})
    prepared = load_data(prepared_path)
    teacher, _ = load_model(teacher_dir / "model.pt")
    (val,) = splits(prepared, CPU, "val")
    torch.manual_seed(params.seed)
    model, _ = make_student(teacher, params.variant("base"), val.examples(2))
    blend.set_alpha(model, 0.0)
    at_init = (predict(model, val, CPU).argmax(1) == val.y).float().mean().item()

    _prune(params, "base", prepared_path, teacher_dir, tmp_path)
    student, recipe = load_model(tmp_path / "student.pt")
    after = (predict(student, val, CPU).argmax(1) == val.y).float().mean().item()
    assert after > at_init + 0.2, (at_init, after)
    assert after > 0.85
    assert recipe["plan"]["achieved"] >= 0.65


def test_history_alpha_decreases_to_zero_within_budget(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    params = tiny_params(base={})
    _prune(params, "base", prepared_path, teacher_dir, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    steps = pd.read_csv(tmp_path / "steps.csv")
    assert list(hist.columns[:4]) == ["epoch", "step", "alpha", "lr"]
    for col in ("train_loss", "train_acc", "val_loss", "val_acc", "seconds"):
        assert col in hist and hist[col].notna().all()
    assert hist["alpha"].is_monotonic_decreasing
    assert hist["alpha"].iloc[0] == pytest.approx(0.7)
    assert hist["alpha"].iloc[-1] == 0.0
    assert len(hist) == params.variant("base").epochs  # every variant uses the whole budget
    assert (hist["alpha"] == 0).sum() >= params.variant("base").finetune_epochs
    assert steps["epochs"].sum() == len(hist)
    assert steps["alpha"].tolist() == sorted(set(hist["alpha"]), reverse=True)


def test_budget_cap_drops_alpha_to_zero(tiny_params, prepared_path, teacher_dir, tmp_path):
    # rate 0.05 needs ~45 steps; 6 epochs for α > 0 cannot finish it
    params = tiny_params(
        slow={"schedule": {"rate": 0.05, "alpha_min": 0.1}, "epochs": 9, "finetune_epochs": 3}
    )
    _prune(params, "slow", prepared_path, teacher_dir, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    steps = pd.read_csv(tmp_path / "steps.csv")
    assert len(hist) == 9
    assert (hist["alpha"] > 0).sum() == 6 and (hist["alpha"] == 0).sum() == 3
    reached = steps.loc[steps["alpha"] > 0, "alpha"].min()
    assert 0.5 < reached < 1  # recorded: the schedule was cut short there


def test_even_mode_reaches_the_last_alpha_before_the_finetune_epochs(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    # The same schedule as above, which plateau mode cuts short at α > 0.5: even mode spreads
    # its 21 steps over the 6 α > 0 epochs and reaches its last α before fine-tuning.
    slow = {
        "schedule": {"rate": 0.1, "alpha_min": 0.1},
        "epochs": 9,
        "finetune_epochs": 3,
        "advance": {"mode": "even"},
    }
    params = tiny_params(slow=slow)
    _prune(params, "slow", prepared_path, teacher_dir, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    last = [a for a in params.variant("slow").alphas() if a > 0][-1]
    assert len(hist) == 9 and (hist["alpha"] == 0).sum() == 3
    assert hist.loc[hist["alpha"] > 0, "alpha"].iloc[-1] == pytest.approx(last)
    assert hist.loc[hist["alpha"] > 0, "alpha"].is_monotonic_decreasing


def test_batch_mode_moves_alpha_at_every_batch_and_ends_each_epoch_as_even_mode(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    slow = {"schedule": {"rate": 0.1, "alpha_min": 0.1}, "epochs": 5, "finetune_epochs": 2}
    params = tiny_params(
        even={**slow, "advance": {"mode": "even"}}, batch={**slow, "advance": {"mode": "batch"}}
    )
    seen: list[float] = []  # α of every training forward pass of the first blend
    original, first = blend.Blend.forward, []

    def recording(self, x):
        first[:] = first or [self]
        if self is first[0] and self.training:
            seen.append(float(self.alpha))
        return original(self, x)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(blend.Blend, "forward", recording)
        _prune(params, "batch", prepared_path, teacher_dir, tmp_path / "batch")
    _prune(params, "even", prepared_path, teacher_dir, tmp_path / "even")
    batch = pd.read_csv(tmp_path / "batch" / "steps.csv")
    even = pd.read_csv(tmp_path / "even" / "steps.csv")
    # one step per α > 0 epoch, ending at even mode's α for that epoch
    assert batch["alpha"].tolist() == even["alpha"].tolist()
    assert batch["epochs"].tolist() == [1, 1, 1, 2]
    moving = [a for a in seen if a > 0]
    anneal = [a for a in params.variant("batch").alphas() if a > 0]
    per_epoch = len(moving) // 3
    assert len(moving) == 3 * per_epoch and per_epoch > 1
    assert moving == sorted(moving, reverse=True) and len(set(moving)) == len(anneal)
    assert moving[per_epoch - 1 :: per_epoch] == pytest.approx(even["alpha"].tolist()[:3])
    assert moving[-1] == pytest.approx(anneal[-1])  # its last α > 0 is trained


def test_oneshot_uses_the_whole_budget_at_alpha_zero(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    params = tiny_params(hard={"schedule": {"kind": "oneshot"}, "epochs": 5})
    _prune(params, "hard", prepared_path, teacher_dir, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert len(hist) == 5 and (hist["alpha"] == 0).all()
    # cosine annealing over the final step: lr falls
    assert hist["lr"].is_monotonic_decreasing


def test_finetune_lr_starts_the_alpha_zero_cosine_and_leaves_the_anneal_at_its_lr(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    params = tiny_params(ft={"finetune_lr": 0.002, "epochs": 6, "finetune_epochs": 2})
    _prune(params, "ft", prepared_path, teacher_dir, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    base = params.variant("ft").optimizer.lr
    assert base != 0.002
    assert (hist.loc[hist["alpha"] > 0, "lr"] == base).all()
    assert hist.loc[hist["alpha"] == 0, "lr"].tolist() == pytest.approx([0.002, 0.001])


def test_one_cosine_runs_over_the_whole_prune_without_a_restart_at_alpha_zero(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    params = tiny_params(one={"lr_schedule": "cosine", "epochs": 6, "finetune_epochs": 2})
    _prune(params, "one", prepared_path, teacher_dir, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    base = params.variant("one").optimizer.lr
    # each epoch starts where the one cosine over 6 epochs is, α > 0 epochs and α = 0 alike
    expected = [base * 0.5 * (1 + math.cos(math.pi * e / 6)) for e in range(6)]
    assert hist["lr"].tolist() == pytest.approx(expected)
    assert (hist["alpha"].iloc[:4] > 0).all() and (hist["alpha"].iloc[4:] == 0).all()


ONESHOT = {"schedule": {"kind": "oneshot"}}


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (
            ONESHOT | {"trainable": "branches", "finetune_trainable": "student"},
            ONESHOT | {"trainable": "student"},
        ),
        (ONESHOT | {"trainable": "all"}, ONESHOT | {"trainable": "student"}),
        (
            ONESHOT | {"optimizer": {"lr": 0.005}, "finetune_lr": 0.04},
            ONESHOT | {"optimizer": {"lr": 0.04}},
        ),
        (ONESHOT | {"lr_schedule": "cosine"}, ONESHOT),
        (
            ONESHOT | {"advance": {"mode": "batch"}, "layer_distill": 1.0, "finetune_epochs": 6},
            ONESHOT,
        ),
        ({"schedule": {"kind": "step", "values": [0.0]}}, ONESHOT),
        ({"calibration_size": 64}, {}),  # init random: no calibration
    ],
    ids=[
        "finetune-trainable",
        "all",
        "finetune-lr",
        "one-cosine",
        "anneal-keys",
        "step-0",
        "calib",
    ],
)
def test_recipes_the_twins_call_alike_train_bit_for_bit_alike(
    tiny_params, prepared_path, teacher_dir, tmp_path, a, b
):
    """The premise of `twins.trains_as`: what it ignores does nothing to the run."""
    from alphaprune.pipeline.params.twins import trains_as

    params = tiny_params(a=a, b=b)
    assert trains_as(params.variant("a")) == trains_as(params.variant("b"))
    for name in "ab":
        _prune(params, name, prepared_path, teacher_dir, tmp_path / name)
    hist = [pd.read_csv(tmp_path / n / "history.csv").drop(columns="seconds") for n in "ab"]
    pd.testing.assert_frame_equal(*hist, check_exact=True)


class _Kill(Exception):
    pass


def _killer(at_epoch):
    def on_epoch(row):
        if row["epoch"] == at_epoch:
            raise _Kill

    return on_epoch


BATCH = {"advance": {"mode": "batch"}, "trainable": "student"}
CHANNELS = {"branch": "channels", "init": "lsq", "trainable": "student", "round_to": 4}


@pytest.fixture(scope="module")
def whole_prunes(prepared_path, teacher_dir, tmp_path_factory):
    """`whole_prunes(recipe)`: the folder of the recipe's prune run through without a kill, run
    once per recipe (the kill points of one recipe share it)."""
    done: dict[str, Path] = {}

    def whole(recipe: dict) -> Path:
        key = repr(sorted(recipe.items()))
        if key not in done:
            done[key] = tmp_path_factory.mktemp("whole")
            _prune(tiny_config(base=recipe), "base", prepared_path, teacher_dir, done[key])
        return done[key]

    return whole


@pytest.mark.parametrize(
    ("recipe", "kill_at"),
    [
        ({}, 3),
        ({}, 8),
        ({}, 11),
        (BATCH, 3),
        ({"lr_schedule": "cosine"}, 6),
        (CHANNELS, 3),  # while the channels fade
        (CHANNELS, 11),  # after the narrowing: resumed, the student is narrowed again
    ],
    ids=["3", "8", "11", "batch-3", "one-cosine-6", "channels-3", "channels-11"],
)
def test_resume_after_interruption_is_bit_exact(
    whole_prunes, prepared_path, teacher_dir, tmp_path, recipe, kill_at
):
    params = tiny_config(base=recipe)
    whole = whole_prunes(recipe)
    with pytest.raises(_Kill):
        _prune(
            params, "base", prepared_path, teacher_dir, tmp_path / "cut", on_epoch=_killer(kill_at)
        )
    cut = tmp_path / "cut"
    assert (cut / "checkpoint" / "last.pt").exists()
    assert not (cut / "student.pt").exists()
    # The histories grew while it ran (rewritten at most once a second, so up to a second old).
    epochs = pd.read_csv(cut / "history.csv")["epoch"].tolist()
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < kill_at
    # Resuming rewinds them to the checkpoint before the first new epoch is written.
    resumed_at = torch.load(cut / "checkpoint" / "last.pt", weights_only=True)["epoch"]
    seen = []
    _prune(
        params,
        "base",
        prepared_path,
        teacher_dir,
        cut,
        on_epoch=lambda row: seen.append(len(pd.read_csv(cut / "history.csv"))),
    )
    assert seen[0] == resumed_at < kill_at and seen == sorted(seen)

    a = pd.read_csv(whole / "history.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "cut" / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    sa = load_model(whole / "student.pt")[0].state_dict()
    sb = load_model(tmp_path / "cut" / "student.pt")[0].state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def resnet_teacher(prepared_path, tmp_path_factory) -> Path:
    """A ResNet-20 teacher on the digits (one epoch): a model with residual blocks to drop."""
    from alphaprune.pipeline.stages.pretrain import pretrain

    raw = {**TINY, "model": {"name": "resnet20"}, "teacher": {**TINY["teacher"], "epochs": 1}}
    out = tmp_path_factory.mktemp("resnet")
    pretrain(resolve(raw, "tiny"), prepared_path, out)
    return out


BLOCKS = {
    "branch": "blocks",
    "amount": 0.3,
    "target": "macs",
    "trainable": "student",
    "calibration_size": 64,
    "schedule": {"kind": "linear", "steps": 3},
    "advance": {"mode": "even"},
    "epochs": 6,
    "finetune_epochs": 2,
}


@pytest.fixture(scope="module")
def whole_block_prune(prepared_path, resnet_teacher, tmp_path_factory) -> Path:
    """The block prune run through without a kill, once for the kills below."""
    out = tmp_path_factory.mktemp("whole")
    params = resolve({**TINY, "model": {"name": "resnet20"}, "variants": {"base": BLOCKS}}, "t")
    _prune(params, "base", prepared_path, resnet_teacher, out)
    return out


@pytest.mark.parametrize("kill_at", [3, 6])  # while the blocks fade; after they are dropped
def test_a_killed_block_prune_resumes_bit_exact(
    prepared_path, resnet_teacher, whole_block_prune, tmp_path, kill_at
):
    params = resolve({**TINY, "model": {"name": "resnet20"}, "variants": {"base": BLOCKS}}, "t")
    with pytest.raises(_Kill):
        _prune(
            params,
            "base",
            prepared_path,
            resnet_teacher,
            tmp_path / "cut",
            on_epoch=_killer(kill_at),
        )
    assert (tmp_path / "cut" / "checkpoint" / "last.pt").exists()
    _prune(params, "base", prepared_path, resnet_teacher, tmp_path / "cut")
    a = pd.read_csv(whole_block_prune / "history.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "cut" / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    sa = load_model(whole_block_prune / "student.pt")[0].state_dict()
    sb = load_model(tmp_path / "cut" / "student.pt")[0].state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # the student is the teacher with whole blocks gone: their residual layers are not in it
    student, recipe = load_model(tmp_path / "cut" / "student.pt")
    dropped = [spec["name"] for spec in recipe["layers"]]
    assert dropped and all(spec["branch"] == "blocks" for spec in recipe["layers"])
    assert not any(n.startswith(f"{d}.conv") for d in dropped for n, _ in student.named_modules())


def test_checkpoint_of_another_configuration_is_not_resumed(
    tiny_params, prepared_path, teacher_dir, tmp_path, caplog
):
    with pytest.raises(_Kill):
        _prune(
            tiny_params(base={}), "base", prepared_path, teacher_dir, tmp_path, on_epoch=_killer(6)
        )
    other = tiny_params(base={"optimizer": {"lr": 0.03}})
    _prune(other, "base", prepared_path, teacher_dir, tmp_path)
    assert "another configuration" in caplog.text
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == list(range(1, 13))


@pytest.mark.parametrize(
    "override",
    [
        {"loss": {"kind": "regression"}},
        {"loss": {"kind": "kd", "temperature": 2.0}},
        {"augment": {"noise_fraction": 0.5, "noise_std": 0.3}},
        {"loss": {"kind": "regression"}, "augment": {"noise_fraction": 0.2, "noise_std": 0.3}},
        {"trainable": "student"},
        {"trainable": "all"},
        {"init": "pretrained"},
        {"init": "lsq"},
        {"branch": "lowrank", "init": "lsq"},
        {"branch": "dwsep"},
        {"branch": "dwsep", "init": "pretrained"},
        {"branch": "dwsep", "init": "lsq"},
        {"finetune_trainable": "student"},
        {"trainable": "all", "finetune_trainable": "branches"},
        {"recalibrate_bn": 4},
        {"advance": {"mode": "batch"}, "trainable": "student", "finetune_lr": 0.05},
        {"layer_distill": 1.0},
        {"layer_distill": 1.0, "branch": "lowrank", "trainable": "student"},
        {"branch": "sparse", "init": "pretrained"},
        {"schedule": {"kind": "linear", "steps": 3}},
        {"schedule": {"kind": "cosine", "steps": 3}},
        {"schedule": {"kind": "step", "values": [0.5, 0.2]}},
        {"optimizer": {"name": "adamw", "lr": 0.001}},
        {"lr_schedule": "cosine", "advance": {"mode": "plateau"}},
    ],
    ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items())[:60],
)
def test_every_recipe_option_trains(tiny_params, prepared_path, teacher_dir, tmp_path, override):
    params = tiny_params(v=override)
    _prune(params, "v", prepared_path, teacher_dir, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    assert hist["alpha"].iloc[-1] == 0 and len(hist) == params.variant("v").epochs
    assert hist["val_acc"].iloc[-1] > 0.5


def test_branches_mode_leaves_the_teacher_layers_untouched(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    _prune(tiny_params(base={}), "base", prepared_path, teacher_dir, tmp_path)
    teacher = load_model(teacher_dir / "model.pt")[0].state_dict()
    student = load_model(tmp_path / "student.pt")[0].state_dict()
    shared = [k for k in student if k in teacher and "num_batches_tracked" not in k]
    assert len(shared) > 5
    for key in shared:  # first conv, classifier, every BatchNorm weight and statistic
        assert torch.equal(student[key], teacher[key]), key


def _shared_with_teacher(teacher_dir, student_path) -> tuple[dict, dict, list[str]]:
    teacher = load_model(teacher_dir / "model.pt")[0].state_dict()
    student = load_model(student_path)[0].state_dict()
    shared = [k for k in student if k in teacher and "num_batches_tracked" not in k]
    return teacher, student, shared


def test_finetune_trainable_student_trains_the_survivors_only_at_alpha_zero(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    """trainable: branches while α > 0, then the whole student at α = 0: the layers the student
    keeps from the teacher are the teacher's until the collapse, and train after it."""
    params = tiny_params(ft={"finetune_trainable": "student"})
    with pytest.raises(_Kill):  # stopped at the last α > 0 epoch's end: checkpoint of step k
        _prune(params, "ft", prepared_path, teacher_dir, tmp_path / "cut", on_epoch=_killer(10))
    state = torch.load(tmp_path / "cut" / "checkpoint" / "last.pt", weights_only=True)["model"]
    teacher, _, _ = _shared_with_teacher(teacher_dir, teacher_dir / "model.pt")
    kept = [k for k in teacher if k in state and "num_batches_tracked" not in k]
    assert len(kept) > 5 and all(torch.equal(state[k], teacher[k]) for k in kept)

    _prune(params, "ft", prepared_path, teacher_dir, tmp_path / "whole")
    teacher, student, shared = _shared_with_teacher(teacher_dir, tmp_path / "whole" / "student.pt")
    changed = {k for k in shared if not torch.equal(student[k], teacher[k])}
    assert {k for k in shared if k.endswith(".weight") and "bn" not in k} <= changed, changed
    assert any("running_mean" in k for k in changed)  # BatchNorm trains (train mode) too


def test_recalibrated_student_changes_only_batchnorm_statistics(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    _prune(tiny_params(rc={"recalibrate_bn": 5}), "rc", prepared_path, teacher_dir, tmp_path)
    teacher, student, shared = _shared_with_teacher(teacher_dir, tmp_path / "student.pt")
    changed = {k for k in shared if not torch.equal(student[k], teacher[k])}
    stats = {k for k in shared if k.endswith(("running_mean", "running_var"))}
    assert stats and changed == stats  # the teacher's weights stay frozen; statistics moved


def test_layer_distillation_adds_its_term_to_the_training_loss_while_alpha_is_above_zero(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    plain = tiny_params(v={})
    distilled = tiny_params(v={"layer_distill": 5.0})
    _prune(plain, "v", prepared_path, teacher_dir, tmp_path / "plain")
    _prune(distilled, "v", prepared_path, teacher_dir, tmp_path / "distilled")
    a = pd.read_csv(tmp_path / "plain" / "history.csv")
    b = pd.read_csv(tmp_path / "distilled" / "history.csv")
    anneal = a["alpha"] > 0
    assert (b.loc[anneal, "train_loss"] > a.loc[anneal, "train_loss"]).all()


def test_steps_record_the_accuracy_where_each_alpha_step_starts(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    """val_acc_start of the α = 0 step is the collapsed student's accuracy before any
    fine-tuning: for one-shot, the freshly initialised branches in place of the layers."""
    params = tiny_params(hard={"schedule": {"kind": "oneshot"}, "epochs": 2})
    _prune(params, "hard", prepared_path, teacher_dir, tmp_path)
    steps = pd.read_csv(tmp_path / "steps.csv")
    prepared = load_data(prepared_path)
    teacher, _ = load_model(teacher_dir / "model.pt")
    train, val = splits(prepared, CPU, "train", "val")
    torch.manual_seed(0)  # what the stage does with its seed before building the student
    model, _ = make_student(teacher, params.variant("hard"), train.examples(2))
    blend.set_alpha(model, 0.0)
    blend.collapse(model)
    at_collapse = (predict(model, val, CPU).argmax(1) == val.y).float().mean().item()
    assert steps["val_acc_start"].tolist() == [at_collapse]
    assert steps["val_acc"].iloc[-1] > at_collapse  # fine-tuning recovered from it


def test_divergence_stops_with_a_clear_message(tiny_params, prepared_path, teacher_dir, tmp_path):
    params = tiny_params(
        hot={
            "optimizer": {"lr": 10.0, "grad_clip": None},
            "loss": {"kind": "regression"},  # unbounded: too large a step overflows
            "trainable": "all",
        }
    )
    with pytest.raises(DivergenceError, match=r"^variant hot: .*α=.*epoch \d+.*optimizer.lr"):
        _prune(params, "hot", prepared_path, teacher_dir, tmp_path)
    assert not (tmp_path / "student.pt").exists()
    assert not (tmp_path / "history.csv").exists()  # no NaN results written


def test_non_finite_weights_stop_the_run(
    tiny_params, prepared_path, teacher_dir, tmp_path, monkeypatch
):
    """A weight at inf stops the run at the end of its epoch, even while the loss is finite."""
    import alphaprune.fit as tr

    real = tr.train_epoch

    def epoch_then_poison(run, lr):
        out = real(run, lr)
        with torch.no_grad():
            next(p for p in run.net.parameters() if p.requires_grad).view(-1)[0] = float("inf")
        return out

    monkeypatch.setattr(tr, "train_epoch", epoch_then_poison)
    with pytest.raises(DivergenceError, match=r"variant base: .*epoch 1: .*weights not finite"):
        _prune(tiny_params(base={}), "base", prepared_path, teacher_dir, tmp_path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_tampered_checkpoint_is_refused_without_running_it(
    tiny_params, prepared_path, teacher_dir, tmp_path
):
    from alphaprune.errors import FileFormatError

    marker = tmp_path / "pwned"
    (tmp_path / "checkpoint").mkdir()
    torch.save({"format_version": 1, "x": _Evil(marker)}, tmp_path / "checkpoint" / "last.pt")
    with pytest.raises(FileFormatError, match=r"last\.pt: refused: .*code.* delete it"):
        _prune(tiny_params(base={}), "base", prepared_path, teacher_dir, tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_host_placement_trains_exactly_like_device_placement(
    tiny_params, prepared_path, teacher_dir, tmp_path, workers
):
    """Data too big for the GPU stays in host memory behind a DataLoader: same batches, same
    results (on the CPU, bit for bit), with or without worker processes."""
    params = tiny_params(base={"augment": {"noise_fraction": 0.5, "noise_std": 0.3}})
    host = params.model_copy(
        update={
            "runtime": params.runtime.model_copy(
                update={"data_placement": "host", "workers": workers}
            )
        }
    )
    _prune(params, "base", prepared_path, teacher_dir, tmp_path / "device")
    _prune(host, "base", prepared_path, teacher_dir, tmp_path / "host")
    a = pd.read_csv(tmp_path / "device" / "history.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "host" / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.parametrize("loss", [{"kind": "ce"}, {"kind": "kd"}, {"kind": "regression"}])
def test_a_float64_run_trains_and_saves_in_float64(
    tiny_params, prepared_path, teacher_dir, tmp_path, loss
):
    """`runtime.precision: float64`: the teacher's copy, the branches, the batches, the teacher
    targets and the losses all in float64 (a float32 tensor anywhere would stop the run with a
    dtype error), and the student saved as it trained; loading it gives a float32 model."""
    from alphaprune.torchfiles import safe_load

    params = tiny_params(base={"loss": loss, "init": "lsq", "recalibrate_bn": 2})
    params = params.model_copy(
        update={"runtime": params.runtime.model_copy(update={"precision": "float64"})}
    )
    _prune(params, "base", prepared_path, teacher_dir, tmp_path)
    blob = safe_load(tmp_path / "student.pt", "model file", format=None, version=None)
    assert {t.dtype for t in blob["state_dict"].values() if t.is_floating_point()} == {
        torch.float64
    }
    student, _ = load_model(tmp_path / "student.pt")
    assert next(student.parameters()).dtype == torch.float32
    assert pd.read_csv(tmp_path / "history.csv")["val_acc"].iloc[-1] > 0.8


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    "augment", [{}, {"noise_fraction": 0.5, "noise_std": 0.3, "crop_flip": True}]
)
def test_a_training_epoch_never_synchronises_with_the_host(augment):
    """CUDA's sync debug mode raises on any host synchronisation inside the epoch."""
    from alphaprune import fit as tr
    from alphaprune import optim
    from alphaprune.augment import Augment
    from alphaprune.batches import DeviceData
    from alphaprune.fitspec import Advance, Optimizer
    from alphaprune.losses import make_loss
    from alphaprune.models import build_model

    runtime = Runtime(torch.device("cuda"))
    x = torch.randint(0, 256, (512, 3, 32, 32), dtype=torch.uint8)
    y = torch.randint(0, 10, (512,))
    data_ = DeviceData(x, y, [127.0] * 3, [64.0] * 3, runtime)
    model = build_model("resnet20", 10).cuda().to(memory_format=torch.channels_last)
    spec = tr.FitSpec(
        alphas=[None],
        epochs=1,
        finetune_epochs=0,
        advance=Advance(),
        batch_size=128,
        optimizer=Optimizer(lr=0.01, grad_clip=5.0),
        loss=make_loss("ce"),
        augment=Augment(**augment),
    )
    opt = optim.make_optimizer(list(model.parameters()), spec.optimizer)
    gen = torch.Generator(device="cuda").manual_seed(0)
    lr = optim.lr_schedule(spec, True, 0, 0, 1)
    run = tr._EpochInputs(model, [], data_, opt, spec, gen, None, runtime, None)
    tr._train_epoch(run, lr)  # warm-up (cuDNN)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = tr._train_epoch(run, lr)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out["train_loss"].is_cuda and 0 <= out["train_acc"].item() <= 1


def test_a_block_checkpoint_belongs_to_the_blocks_it_dropped(prepared_path, teacher_dir):
    """The blocks are chosen on the device at every start: a resume that chose others (a
    near-tie broken otherwise) must start over, not load weights into another student."""
    from alphaprune.budget.allocator import allocate
    from alphaprune.models import build_model
    from alphaprune.pipeline.stages.prune import _fingerprint

    params = resolve({**TINY, "model": {"name": "resnet20"}, "variants": {"base": BLOCKS}}, "t")
    cfg, prepared, teacher = (
        params.variant("base"),
        load_data(prepared_path),
        teacher_dir / "model.pt",
    )
    model = build_model("resnet20", 10, in_channels=3, image_size=32).eval()
    x = torch.randn(8, 3, 32, 32)
    one, two = (allocate(model, "blocks", a, x, target="macs") for a in (0.2, 0.4))
    assert [lp.name for lp in one.layers] != [lp.name for lp in two.layers]
    prints = {_fingerprint(cfg, 0, teacher, prepared, None, p) for p in (one, two, one)}
    assert len(prints) == 2


BLOCKS_AND_CHANNELS = {**BLOCKS, "branch": "blocks+channels", "amount": 0.5, "init": "pretrained"}


def test_a_killed_prune_of_blocks_and_channels_resumes_bit_exact(
    prepared_path, resnet_teacher, tmp_path
):
    """Killed in the fine-tune, once the blocks are dropped and the channels removed: the
    resumed run ends as the run that was not killed, and its student is the teacher less the
    blocks and the channels the plan names."""
    variants = {"base": BLOCKS_AND_CHANNELS}
    params = resolve({**TINY, "model": {"name": "resnet20"}, "variants": variants}, "t")
    _prune(params, "base", prepared_path, resnet_teacher, tmp_path / "whole")
    with pytest.raises(_Kill):
        _prune(params, "base", prepared_path, resnet_teacher, tmp_path / "cut", on_epoch=_killer(5))
    _prune(params, "base", prepared_path, resnet_teacher, tmp_path / "cut")
    a = pd.read_csv(tmp_path / "whole" / "history.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "cut" / "history.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    sa = load_model(tmp_path / "whole" / "student.pt")[0].state_dict()
    student, recipe = load_model(tmp_path / "cut" / "student.pt")
    sb = student.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    plan = recipe["plan"]
    dropped = [spec["name"] for spec in recipe["layers"]]
    assert plan["kind"] == "blocks+channels" and dropped and recipe["narrowing"]
    assert all(spec["branch"] == "blocks" for spec in recipe["layers"])
    assert not any(n.startswith(f"{d}.conv") for d in dropped for n, _ in student.named_modules())
    assert sum(p.numel() for p in student.parameters()) == plan["student_params"]
    assert plan["achieved"] >= 0.5
