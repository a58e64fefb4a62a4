"""The command line: the plan command, one-line errors with exit status 2, and the stage
commands wired end to end on a tiny digits configuration."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from alphaprune import blend
from alphaprune.budget.allocator import allocate
from alphaprune.modelfile import recipe_for, save_model
from alphaprune.models import build_model
from alphaprune.pipeline.cli import commands, main
from alphaprune.pipeline.commands.unlock import live_runs
from alphaprune.pipeline.provenance.codedeps import STAGES
from alphaprune.student import make_student
from conftest import write_png

REPO = Path(__file__).resolve().parents[2]


def test_plan_json(capsys):
    assert (
        main(
            ["plan", "--model", "tv:resnet18", "--branch", "lowrank", "--amount", "0.65", "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert {"teacher_params", "student_params", "achieved", "layers"} <= out.keys()
    assert 0.65 <= out["achieved"] <= 0.655
    assert out["teacher_params"] == 11_181_642
    layer = out["layers"][0]
    assert {"name", "branch", "size", "params_before", "params_after"} <= layer.keys()


def test_plan_table(capsys):
    assert main(["plan", "--model", "cnn", "--input-size", "1", "8", "8"]) == 0
    out = capsys.readouterr().out
    assert "lowrank" in out and "excluded:" in out  # the default recipe's branch
    removed = float(re.search(r"removes (0\.\d+) \(target 0.65\)", out).group(1))
    assert 0.65 <= removed < 0.75


def test_plan_to_a_mac_target_reports_both_fractions(capsys):
    args = ["plan", "--model", "resnet20", "--branch", "pointwise", "--target", "macs"]
    assert main([*args, "--amount", "0.6"]) == 0
    out = capsys.readouterr().out
    macs = float(re.search(r"MACs per example; removes (0\.\d+) \(target 0.6\)", out).group(1))
    params = float(re.search(r"parameters; removes (0\.\d+)\n", out).group(1))
    assert 0.6 <= macs < 0.7 and 0 < params < 1


def test_plan_lists_the_blocks_a_budget_drops_and_refuses_a_model_without(capsys):
    args = ["plan", "--model", "resnet20", "--branch", "blocks", "--target", "macs"]
    assert main([*args, "--amount", "0.3"]) == 0
    out = capsys.readouterr().out
    dropped = re.findall(r"^(layer\d\.\d) +blocks ", out, re.MULTILINE)
    macs = float(re.search(r"MACs per example; removes (0\.\d+) \(target 0.3\)", out).group(1))
    # ResNet-20's blocks each do about a ninth of its MACs: three or four meet 30%
    assert 3 <= len(dropped) <= 4 and macs >= 0.3
    code = main(["plan", "--model", "cnn", "--input-size", "1", "8", "8", "--branch", "blocks"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "has no residual blocks" in err and "Traceback" not in err


def test_plan_of_blocks_and_channels_lists_each_split_it_weighed(capsys):
    """Every split of the budget tried, with how far its one-shot student moved the logits;
    the one chosen is marked, and the plan drops its blocks and cuts channels for the rest."""
    args = ["plan", "--model", "resnet20", "--branch", "blocks+channels", "--target", "macs"]
    assert main([*args, "--amount", "0.6", "--exclude", "linear"]) == 0
    out = capsys.readouterr().out
    splits = re.findall(
        r"^split: (\d) block\(s\) dropped .* logits moved (\S+)( \(chosen\))?$", out, re.M
    )
    assert len(splits) >= 3 and sum(bool(chosen) for *_, chosen in splits) == 1
    blocks, damage, _ = next(s for s in splits if s[2])
    assert float(damage) == min(float(d) for _, d, _ in splits)
    dropped = re.findall(r"^ *(layer\d\.\d) +blocks ", out, re.MULTILINE)
    assert len(dropped) == int(blocks)
    macs = float(re.search(r"MACs per example; removes (0\.\d+) \(target 0.6\)", out).group(1))
    assert macs >= 0.6


def _kept(out: str) -> list[str]:
    return re.findall(r"group \S+: keeps \d+ of \d+ channels", out)


def test_a_channels_plan_is_the_same_every_call_and_follows_the_teachers_weights(tmp_path, capsys):
    """Without a teacher the plan ranks a seeded init (the same plan every call, and it says
    so); `--teacher` plans on the file's weights, as the prune will: other weights, other
    channels."""
    args = ["plan", "--model", "resnet20", "--branch", "channels", "--round-to", "1"]
    plans = []
    for _ in range(2):
        assert main(args) == 0
        plans.append(capsys.readouterr().out)
    assert plans[0] == plans[1] and "random init, seed 0" in plans[0]
    assert main([*args, "--seed", "1"]) == 0
    assert _kept(capsys.readouterr().out) != _kept(plans[0])

    torch.manual_seed(7)
    teacher = build_model("resnet20", 10)
    for name, p in teacher.named_parameters():  # stage 1 heavy, stage 3 light: a plan unlike
        if name.endswith("conv1.weight"):  # the init's
            p.data.mul_(4.0 if name.startswith("layer1") else 0.25)
    path = tmp_path / "teacher.pt"
    save_model(path, teacher, recipe_for("resnet20", 10, (3, 32, 32)))
    expected = allocate(teacher, "channels", 0.65, torch.zeros(2, 3, 32, 32), round_to=1)
    assert main(["plan", "--teacher", str(path), "--branch", "channels", "--round-to", "1"]) == 0
    out = capsys.readouterr().out
    assert f"the trained teacher {path}" in out
    assert f"student {expected.student_params:,} parameters" in out
    assert (
        _kept(out)
        == [
            f"group {root}: keeps {teacher.get_submodule(root).weight.shape[0] - len(r)} of "
            f"{teacher.get_submodule(root).weight.shape[0]} channels"
            for root, r in expected.removed.items()
        ]
        != _kept(plans[0])
    )


def test_plan_needs_a_model_or_a_teacher_and_refuses_a_student(tmp_path, capsys):
    assert main(["plan"]) == 2
    assert "give --model NAME or --teacher FILE" in capsys.readouterr().err
    teacher = build_model("cnn", 10, in_channels=1, image_size=8)
    plan = allocate(teacher, "lowrank", 0.65, torch.zeros(2, 1, 8, 8))
    student = make_student(teacher, plan, "pretrained")
    blend.set_alpha(student, 0.0)
    blend.collapse(student)  # the student as a prune saves it
    path = tmp_path / "student.pt"
    save_model(path, student, recipe_for("cnn", 10, (1, 8, 8), plan=plan))
    assert main(["plan", "--teacher", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("is a student, not a teacher") and err.count("\n") == 0


def test_unreachable_plan_is_one_line_exit_2(capsys):
    code = main(["plan", "--model", "cnn", "--input-size", "1", "8", "8", "--amount", "0.99"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "unreachable" in err and "Traceback" not in err


@pytest.fixture
def params_file(tmp_path, tiny_raw):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    return path


def test_bad_config_is_one_line_naming_the_key(tmp_path, params_file, capsys):
    out = tmp_path / "prepared" / "d.pt"
    code = main(
        ["prepare", "--params", str(params_file), "--set", "prune.amount=1.5", "--out", str(out)]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "prune.amount" in err and "1.5" in err and err.count("\n") == 0
    assert not out.exists() and not out.parent.exists()


def test_stage_commands_end_to_end(tmp_path, params_file, tiny_raw):
    p = ["--params", str(params_file)]
    data, teacher, variant = tmp_path / "d.pt", tmp_path / "teacher", tmp_path / "v" / "base"
    rec = tmp_path / "records"
    assert main(["prepare", *p, "--out", str(data), "--record", str(rec / "prepare.json")]) == 0
    assert main(["pretrain", *p, "--data", str(data), "--out", str(teacher)]) == 0
    assert (
        main(
            [
                "prune",
                *p,
                "--variant",
                "base",
                "--seed",
                "1",
                "--data",
                str(data),
                "--teacher",
                str(teacher / "model.pt"),
                "--out",
                str(variant),
                "--record",
                str(rec / "prune.json"),
            ]
        )
        == 0
    )
    metrics = variant / "metrics.json"
    assert (
        main(
            [
                "evaluate",
                *p,
                "--variant",
                "base",
                "--data",
                str(data),
                "--teacher",
                str(teacher / "model.pt"),
                "--teacher-metrics",
                str(teacher / "metrics.json"),
                "--student",
                str(variant / "student.pt"),
                "--history",
                str(variant / "history.csv"),
                "--steps",
                str(variant / "steps.csv"),
                "--out",
                str(metrics),
                "--predictions",
                str(variant / "predictions.csv"),
                "--record",
                str(rec / "evaluate.json"),
            ]
        )
        == 0
    )
    m = json.loads(metrics.read_text())
    assert m["achieved"] >= 0.65 and m["test_acc"] > 0.8
    # One prediction per test image, scoring the accuracy metrics.json reports.
    predictions = pd.read_csv(variant / "predictions.csv")
    assert len(predictions) == m["test_size"]
    assert (predictions["label"] == predictions["pred"]).mean() == pytest.approx(m["test_acc"])
    assert m["epochs"] == tiny_raw["prune"]["epochs"]
    # Each stage recorded the params values it read (the pipeline compares them to rerun).
    assert json.loads((rec / "prepare.json").read_text()) == {
        "seed": tiny_raw["seed"],
        "data": tiny_raw["data"],
    }
    runtime = {f"runtime.{k}": tiny_raw["runtime"].get(k) for k in ("device", "precision")}
    assert json.loads((rec / "prune.json").read_text()) == {
        "prune": tiny_raw["prune"],
        "variants.base": {},
        **runtime,
        "runtime.compile": None,  # absent from the params: None, as DVC sees it
        "runtime.sync_batchnorm": None,
    }
    assert json.loads((rec / "evaluate.json").read_text()).keys() == {
        "eval",
        "prune",
        "variants.base",
        *runtime,
    }
    assert sorted(p.name for p in rec.iterdir()) == ["evaluate.json", "prepare.json", "prune.json"]
    unknown = [
        "prune",
        *p,
        "--variant",
        "nope",
        "--data",
        str(data),
        "--teacher",
        str(teacher / "model.pt"),
        "--out",
        str(tmp_path / "x"),
    ]
    assert main(unknown) == 2


def test_model_that_does_not_fit_the_data_is_one_line(tmp_path, params_file, prepared_path, capsys):
    out = tmp_path / "teacher"
    code = main(
        [
            "pretrain",
            "--params",
            str(params_file),
            "--set",
            "model.name=vgg16",
            "--data",
            str(prepared_path),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "model.name" in err and "image_size >= 32" in err and "1x8x8" in err
    assert not out.exists()


def test_missing_input_file_is_one_line(tmp_path, params_file, prepared_path, teacher_dir, capsys):
    code = main(
        [
            "evaluate",
            "--params",
            str(params_file),
            "--variant",
            "base",
            "--data",
            str(prepared_path),
            "--teacher",
            str(teacher_dir / "model.pt"),
            "--teacher-metrics",
            str(tmp_path / "missing.json"),
            "--student",
            str(teacher_dir / "model.pt"),
            "--history",
            str(tmp_path / "h.csv"),
            "--steps",
            str(tmp_path / "s.csv"),
            "--out",
            str(tmp_path / "m.json"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "missing.json" in err
    assert not (tmp_path / "m.json").exists()


# --------------------------------------------------------------- bad input, one line each
def _tree_params(tmp_path, root) -> Path:
    """A params file reading the image tree at `root`."""
    path = tmp_path / "tree.yaml"
    path.write_text(
        yaml.safe_dump({"data": {"name": "imagefolder", "root": str(root)}, "variants": {"a": {}}})
    )
    return path


def _set(*pairs):
    return [arg for pair in pairs for arg in ("--set", pair)]


# (id, how to break the params file, --set overrides, what the one line must contain)
CONFIG_CASES = [
    ("unknown-top-key", lambda p: p.update(colour="red"), [], ["colour", "unknown key"]),
    (
        "unknown-nested-key",
        lambda p: p["prune"]["schedule"].update(bogus=1),
        [],
        ["prune.schedule.bogus"],
    ),
    (
        "unknown-variant-key",
        lambda p: p["variants"]["base"].update(speed=2),
        [],
        ["variants.base.speed"],
    ),
    ("wrong-type", lambda p: p["teacher"].update(epochs="ten"), [], ["teacher.epochs", "ten"]),
    ("amount-too-big", None, ["prune.amount=1.5"], ["prune.amount", "1.5"]),
    ("amount-zero", None, ["prune.amount=0"], ["prune.amount", "0"]),
    (
        "rate-out-of-range",
        lambda p: p["variants"]["base"].update(schedule={"rate": 1.5}),
        [],
        ["variants.base.schedule.rate", "1.5"],
    ),
    ("val-fraction", None, ["data.val_fraction=1.2"], ["data.val_fraction", "1.2"]),
    ("noise-fraction", None, ["prune.augment.noise_fraction=2"], ["noise_fraction", "2"]),
    ("negative-epochs", None, ["teacher.epochs=-1"], ["teacher.epochs", "-1"]),
    ("batch-size-zero", None, ["prune.batch_size=0"], ["prune.batch_size", "0"]),
    ("lr-zero", None, ["prune.optimizer.lr=0"], ["prune.optimizer.lr", "0"]),
    ("finetune-zero", None, ["prune.finetune_epochs=0"], ["prune.finetune_epochs", "0"]),
    ("unknown-model", None, ["model.name=resnet99"], ["model.name", "resnet99"]),
    ("unknown-dataset", None, ["data.name=mnist"], ["data.name", "mnist"]),
    ("unknown-branch", None, ["prune.branch=dense"], ["prune.branch", "dense"]),
    ("unknown-init", None, ["prune.init=zeros"], ["prune.init", "zeros"]),
    ("unknown-schedule", None, ["prune.schedule.kind=zigzag"], ["prune.schedule", "zigzag"]),
    ("unknown-loss", None, ["prune.loss.kind=hinge"], ["prune.loss", "hinge"]),
    ("unknown-trainable", None, ["prune.trainable=none"], ["prune.trainable", "none"]),
    (
        "variant-name-space",
        lambda p: p["variants"].update({"Exp 05": {}}),
        [],
        ["variants", "Exp 05"],
    ),
    ("variant-name-slash", lambda p: p["variants"].update({"a/b": {}}), [], ["variants", "a/b"]),
    (
        "oneshot-with-rate",
        lambda p: p["variants"]["base"].update(schedule={"kind": "oneshot", "rate": 0.1}),
        [],
        ["variants.base.schedule", "rate"],
    ),
    (
        "sparse-with-lsq",
        lambda p: p["variants"]["base"].update(branch="sparse", init="lsq"),
        [],
        ["variants.base", "lsq", "sparse"],
    ),
    ("noise-without-std", None, ["prune.augment.noise_fraction=0.5"], ["noise_std"]),
    ("empty-variants", lambda p: p.update(variants={}), [], ["variants"]),
    ("bad-set-syntax", None, ["prune.amount"], ["--set", "key.path=value"]),
    (
        "removed-key",
        lambda p: p.setdefault("eval", {}).update(latency_seconds=0.2),
        [],
        ["eval.latency_seconds", "removed in alphaprune 0.2.0", "use latency.seconds"],
    ),
]


@pytest.mark.parametrize(
    "change,overrides,expected", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_bad_config_is_one_line_and_writes_nothing(
    tmp_path, tiny_raw, capsys, change, overrides, expected
):
    if change is not None:
        change(tiny_raw)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_raw))
    out = tmp_path / "out" / "d.pt"
    code = main(["prepare", "--params", str(params), *_set(*overrides), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count("\n") == 0 and "Traceback" not in err, err
    assert err.startswith("alphaprune prepare: error: ")
    for fragment in expected:
        assert fragment in err, (fragment, err)
    if change is not None:
        assert str(params) in err  # names the file
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content,expected",
    [
        ("prune: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping"),
        (None, "no such file"),
    ],
    ids=["unparsable-yaml", "list-not-mapping", "missing-file"],
)
def test_unreadable_params_file_is_one_line(tmp_path, capsys, content, expected):
    params = tmp_path / "params.yaml"
    if content is not None:
        params.write_text(content)
    code = main(["check", "--params", str(params)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert str(params) in err and expected in err


def test_check_warns_of_a_schedule_that_cannot_fit_its_budget(params_file, caplog):
    # 28 α steps of at least one epoch each, and 10 epochs before the fine-tune epochs
    fits = ["--set", "variants.fits.schedule={kind: linear, steps: 5}"]
    cut = [
        "--set",
        "variants.cut.schedule={kind: exponential, rate: 0.1, alpha_min: 0.05}",
        "--set",
        "variants.cut.epochs=12",
        "--set",
        "variants.cut.finetune_epochs=2",
    ]
    even = [
        "--set",
        "variants.even.schedule={kind: exponential, rate: 0.1, alpha_min: 0.05}",
        "--set",
        "variants.even.epochs=12",
        "--set",
        "variants.even.finetune_epochs=2",
        "--set",
        "variants.even.advance.mode=even",
    ]
    with caplog.at_level("INFO", logger="alphaprune"):
        assert main(["check", "--params", str(params_file), *fits, *cut, *even]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    (warning,) = [w for w in warnings if "α steps" in w]
    err = caplog.text
    assert "cut: 28 α steps" in warning and "budget 10 epochs" in warning
    assert "does not fit" in warning and "drop to 0 from 0.349" in warning
    assert "even: 28 α steps" in err and "even mode" in err


def test_check_warns_when_params_lack_the_replicates_dvc_expands(tmp_path, tiny_raw, caplog):
    tiny_raw.pop("replicates", None)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_raw))
    with caplog.at_level("INFO", logger="alphaprune"):
        assert main(["check", "--params", str(path)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("no `replicates` key" in w and "dvc repro" in w for w in warnings)


def _damage_corrupt(r):
    (r / "images/train/emu/00.png").write_bytes(b"\x89PNG not really")


def _damage_size(r):
    write_png(r / "images/train/dog/99.png", 1, shape=(3, 9, 5))


def _damage_empty_class(r):
    (r / "images/test/fox").mkdir()


def _damage_classes(r):
    write_png(r / "images/train/yak/00.png", 1)


@pytest.mark.parametrize(
    "damage,expected",
    [
        (_damage_corrupt, "images/train/emu/00.png: cannot decode"),
        (_damage_size, "images/train/dog/99.png is 3x9x5"),
        (_damage_empty_class, "class folder test/fox has no images"),
        (_damage_classes, "different classes (yak)"),
    ],
    ids=["corrupt-image", "mixed-sizes", "empty-class-folder", "class-mismatch"],
)
def test_bad_image_data_is_one_line_naming_the_file(tmp_path, image_tree, capsys, damage, expected):
    root, _ = image_tree
    damage(root)
    out = tmp_path / "out" / "d.pt"
    code = main(["prepare", "--params", str(_tree_params(tmp_path, root)), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and expected in err, err
    assert not (tmp_path / "out").exists()


def test_bad_stage_inputs_are_one_line_and_write_nothing(
    tmp_path, params_file, prepared_path, teacher_dir, capsys
):
    p = ["--params", str(params_file)]
    out = tmp_path / "out"
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(prepared_path.read_bytes()[:1000])
    cases = [
        (
            ["pretrain", *p, "--data", str(tmp_path / "none.pt"), "--out", str(out)],
            "none.pt: no such prepared data file",
        ),
        (
            ["pretrain", *p, "--data", str(corrupt), "--out", str(out)],
            "corrupt.pt: not a readable prepared data file",
        ),
        (
            [
                "prune",
                *p,
                "--variant",
                "base",
                "--data",
                str(prepared_path),
                "--teacher",
                str(tmp_path / "no-teacher.pt"),
                "--out",
                str(out),
            ],
            "no-teacher.pt",
        ),
        (
            [
                "prune",
                *p,
                "--set",
                "prune.exclude=[conv1,conv2,conv3,fc]",
                "--variant",
                "base",
                "--data",
                str(prepared_path),
                "--teacher",
                str(teacher_dir / "model.pt"),
                "--out",
                str(out),
            ],
            "unreachable",
        ),
        (
            [
                "prune",
                *p,
                "--variant",
                "nope",
                "--data",
                str(prepared_path),
                "--teacher",
                str(teacher_dir / "model.pt"),
                "--out",
                str(out),
            ],
            "unknown variant 'nope'",
        ),
    ]
    for argv, expected in cases:
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.count("\n") == 0 and expected in err, (argv[0], err)
        assert not out.exists(), argv


# ------------------------------------------------------------------------------------- unlock
def _lookalike(folder: Path, program: str, *args: str) -> subprocess.Popen:
    """A process that looks like `python .../<program> <args>` working in `folder`."""
    script = folder / "bin" / program
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text("import time\ntime.sleep(60)\n")
    return subprocess.Popen([sys.executable, str(script), *args], cwd=folder)


@pytest.mark.parametrize(
    "program, args",
    [("snakemake", ["--cores", "1"]), ("alphaprune", ["prune", "--variant", "a"])],
    ids=["snakemake", "a-job-whose-snakemake-was-killed"],
)
def test_unlock_refuses_while_a_run_works_in_the_folder(tmp_path, capsys, program, args):
    locks = tmp_path / ".snakemake" / "locks"
    locks.mkdir(parents=True)
    (locks / "0.input.lock").write_text("x")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    assert live_runs(tmp_path) == {}
    procs = [
        _lookalike(tmp_path, program, *args),
        _lookalike(elsewhere, program, *args),  # a run in another folder is not ours
        _lookalike(tmp_path, "alphaprune", "compare"),
    ]  # nor a command outside the DAG
    try:
        deadline = time.monotonic() + 10
        while not live_runs(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(live_runs(tmp_path)) == [procs[0].pid]
        assert main(["unlock", "--dir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert f"a run is still working in {tmp_path}" in err
        assert f"pid {procs[0].pid}: {program} {' '.join(args[:2])}" in err
        assert (locks / "0.input.lock").exists()
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_unlock_without_a_lock_does_nothing(tmp_path):
    assert main(["unlock", "--dir", str(tmp_path)]) == 0
    assert not (tmp_path / ".snakemake").exists()


def test_unlock_reads_no_params_and_so_does_not_wait_for_torch(tmp_path):
    """`make run` starts with it: importing torch (to validate params) took 1.5 s of it."""
    code = (
        "import sys\nfrom alphaprune.pipeline.cli import main\n"
        f"assert main(['unlock', '--dir', {str(tmp_path)!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_code_writes_the_manifests_without_torch_and_refuses_a_folder_without_the_package(
    tmp_path, capsys
):
    """DVC's `code` stage runs it after every edit: it imports no torch (a second, not three),
    and a wrong --src is one line saying where to run it."""
    out = tmp_path / "code"
    code = (
        "import sys\nfrom alphaprune.pipeline.cli import main\n"
        f"assert main(['code', '--src', {str(REPO / 'src')!r}, '--out', {str(out)!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert sorted(p.stem for p in out.iterdir()) == sorted(STAGES)
    assert main(["code", "--src", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no alphaprune package there" in err and "--src" in err


# ----------------------------------------------------------------------------- the dispatcher
def test_every_command_module_is_a_command_with_a_help_line():
    """Commands are found, not listed: every module of alphaprune.pipeline.commands opens with
    "`alphaprune <name>`: <help>", which --help shows, and defines add_arguments and run."""
    import importlib

    found = commands()
    assert {"prepare", "pretrain", "prune", "evaluate", "plots", "report", "compare"} <= set(found)
    for name, help in found.items():
        module = importlib.import_module(f"alphaprune.pipeline.commands.{name}")
        assert module.__doc__.startswith(f"`alphaprune {name}`: ")
        assert 10 < len(help) <= 80 and "\n" not in help
        assert callable(module.add_arguments) and callable(module.run)


def test_a_reader_that_stops_early_gets_no_traceback():
    """`alphaprune plan ... | head -1`: the pipe closes before the table is printed, and the
    command ends as a killed-by-SIGPIPE process does, without a traceback."""
    argv = [sys.executable, "-m", "alphaprune.pipeline.cli", "plan", "--model", "cnn"]
    proc = subprocess.Popen(
        [*argv, "--input-size", "1", "8", "8"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader is gone before the first line
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_plan_refuses_a_ranking_without_a_latency_target_and_a_file_without_a_table(
    tmp_path, capsys
):
    plan = ["plan", "--model", "cnn", "--branch", "channels", "--input-size", "1", "8", "8"]
    assert main([*plan, "--ranking", "global"]) == 2
    assert "--ranking applies to --target latency only" in capsys.readouterr().err
    stub = tmp_path / "table.json"
    stub.write_text(json.dumps({"measured": False, "why": "latency.table is unset"}))
    assert main([*plan, "--target", "latency", "--table", str(stub)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no table (latency.table is unset): set latency" in err
