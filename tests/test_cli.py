"""The command line: the plan command, one-line errors with exit status 2, and the stage
commands wired end to end on a tiny digits configuration."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from alphaprune.cli import main


def test_plan_json(capsys):
    assert main(["plan", "--model", "tv:resnet18", "--branch", "lowrank", "--amount", "0.65",
                 "--json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert {"teacher_params", "student_params", "achieved", "layers"} <= out.keys()
    assert 0.65 <= out["achieved"] <= 0.655
    assert out["teacher_params"] == 11_181_642
    layer = out["layers"][0]
    assert {"name", "branch", "size", "params_before", "params_after"} <= layer.keys()


def test_plan_table(capsys):
    assert main(["plan", "--model", "cnn", "--input-size", "1", "8", "8"]) == 0
    out = capsys.readouterr().out
    assert "pointwise" in out and "excluded:" in out
    removed = float(re.search(r"removes (0\.\d+) \(target 0.65\)", out).group(1))
    assert 0.65 <= removed < 0.75


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
    code = main(["prepare", "--params", str(params_file), "--set", "prune.amount=1.5",
                 "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "prune.amount" in err and "1.5" in err and err.count("\n") == 0
    assert not out.exists() and not out.parent.exists()


def test_stage_commands_end_to_end(tmp_path, params_file, tiny_raw):
    p = ["--params", str(params_file)]
    data, teacher, variant = tmp_path / "d.pt", tmp_path / "teacher", tmp_path / "v" / "base"
    assert main(["prepare", *p, "--out", str(data)]) == 0
    assert main(["pretrain", *p, "--data", str(data), "--out", str(teacher)]) == 0
    assert main(["prune", *p, "--variant", "base", "--data", str(data),
                 "--teacher", str(teacher / "model.pt"), "--out", str(variant)]) == 0  # fmt: skip
    metrics = variant / "metrics.json"
    assert main(["evaluate", *p, "--data", str(data), "--teacher", str(teacher / "model.pt"),
                 "--teacher-metrics", str(teacher / "metrics.json"),
                 "--student", str(variant / "student.pt"), "--history",
                 str(variant / "history.csv"), "--steps", str(variant / "steps.csv"),
                 "--out", str(metrics)]) == 0  # fmt: skip
    m = json.loads(metrics.read_text())
    assert m["achieved"] >= 0.65 and m["test_acc"] > 0.8
    assert m["epochs"] == tiny_raw["prune"]["epochs"]
    unknown = ["prune", *p, "--variant", "nope", "--data", str(data),
               "--teacher", str(teacher / "model.pt"), "--out", str(tmp_path / "x")]  # fmt: skip
    assert main(unknown) == 2


def test_model_that_does_not_fit_the_data_is_one_line(tmp_path, params_file, prepared_path, capsys):
    out = tmp_path / "teacher"
    code = main(["pretrain", "--params", str(params_file), "--set", "model.name=vgg16",
                 "--data", str(prepared_path), "--out", str(out)])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "model.name" in err and "image_size >= 32" in err and "1x8x8" in err
    assert not out.exists()


def test_missing_input_file_is_one_line(tmp_path, params_file, prepared_path, teacher_dir, capsys):
    code = main(["evaluate", "--params", str(params_file), "--data", str(prepared_path),
                 "--teacher", str(teacher_dir / "model.pt"),
                 "--teacher-metrics", str(tmp_path / "missing.json"),
                 "--student", str(teacher_dir / "model.pt"), "--history", str(tmp_path / "h.csv"),
                 "--steps", str(tmp_path / "s.csv"),
                 "--out", str(tmp_path / "m.json")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "missing.json" in err
    assert not (tmp_path / "m.json").exists()
