"""The benchmark runs end to end on the CPU and reports consistent numbers (its timings are
measured by `alphaprune bench`, not asserted here)."""

from __future__ import annotations

import json

import pytest
import torch

from alphaprune.branches.base import count_params
from alphaprune.budget.allocator import allocate
from alphaprune.costs import count_macs
from alphaprune.models import build_model
from alphaprune.pipeline.cli import main
from alphaprune.pipeline.deploy import bench
from alphaprune.runtime import Runtime

SETUP = bench.BenchSetup(
    model="cnn", shape=(1, 8, 8), n_train=256, batch_size=64, epochs=2, min_run_time=0.05
)


@pytest.fixture(scope="module")
def result():
    return bench.run(SETUP, Runtime(torch.device("cpu")))


def test_every_measurement_is_a_positive_number(result):
    assert result["device"].startswith("CPU")
    for key in (
        "fit_img_s",
        "plain_img_s",
        "step_ms_original",
        "step_ms_student",
        "step_ms_blend",
        "step_ms_blend_branches_only",
        "step_ms_blend_branches_distill",
        "teacher_infer_ms",
        "student_infer_ms",
    ):
        assert result[key] > 0, key


def test_student_is_the_planned_size(result):
    plan = allocate(
        build_model("cnn", 10, in_channels=1, image_size=8),
        "pointwise",
        0.65,
        torch.zeros(2, 1, 8, 8),
    )
    assert (result["teacher_params"], result["student_params"]) == (
        plan.teacher_params,
        plan.student_params,
    )
    assert result["student_macs"] < result["teacher_macs"]
    assert result["student_over_teacher_macs"] == result["student_macs"] / result["teacher_macs"]


def test_cli_prints_the_ratios_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = [
        "bench",
        "--model",
        "cnn",
        "--input-size",
        "1",
        "8",
        "8",
        "--n-train",
        "128",
        "--batch-size",
        "64",
        "--epochs",
        "2",
        "--device",
        "cpu",
        "--min-run-time",
        "0.05",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "fit/plain" in text and "blend/(original+student)" in text and "CPU" in text
    assert json.loads(out.read_text())["model"] == "cnn"
    assert main(["bench", "--epochs", "1"]) == 2  # nothing left to time after the warm-up
    assert main(["bench", "--n-train", "32", "--batch-size", "64"]) == 2  # not one batch


def test_a_channels_student_is_timed_narrowed_as_the_prune_makes_it():
    """`--branch channels` times the student the prune makes: the teacher's channels removed,
    not the collapsed student at the teacher's widths (which has the teacher's MACs)."""
    setup = bench.BenchSetup(**{**SETUP.__dict__, "branch": "channels", "min_run_time": 0.01})
    x, y = bench.synthetic_data(setup)
    runtime = Runtime(torch.device("cpu"))
    _, _, student = bench.blend_cost(setup, x, y, runtime)
    # the plan bench made, on the seeded init (the teacher it returns has trained some steps)
    plan = allocate(bench._model(setup, runtime), "channels", 0.65, torch.zeros(2, 1, 8, 8))
    assert plan.removed  # the plan narrows something
    assert count_params(student) == plan.student_params < plan.teacher_params
    assert count_macs(student, torch.zeros(1, 1, 8, 8)) == plan.student_macs
