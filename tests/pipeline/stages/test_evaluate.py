"""Evaluation: α held, the accuracy drops, parameter counts, and the metrics record."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from alphaprune import blend
from alphaprune.batches import DeviceData
from alphaprune.branches.sparse import Sparse
from alphaprune.pipeline.params.schema import EvalConfig
from alphaprune.pipeline.stages.evaluate import (
    alpha_held,
    alpha_step_drops,
    evaluate,
    noisy_accuracy,
)
from alphaprune.runtime import Runtime

CPU = Runtime(torch.device("cpu"))
STEPS = [
    {"alpha": 0.9, "train_acc_clean": 0.99, "val_acc": 0.98},
    {"alpha": 0.5, "train_acc_clean": 0.985, "val_acc": 0.95},
    {"alpha": 0.1, "train_acc_clean": 0.95, "val_acc": 0.97},
    {"alpha": 0.0, "train_acc_clean": 0.99, "val_acc": 0.98},
]


@pytest.mark.parametrize(
    "key,teacher,tol,expected",
    [
        ("train_acc_clean", 0.99, 1.0, 0.5),  # 0.95 at α=0.1 is 4 pp below: held down to 0.5
        ("train_acc_clean", 0.99, 5.0, 0.0),  # everything within 5 pp
        ("val_acc", 0.98, 1.0, 0.9),  # 0.95 at α=0.5 fell out; later recovery does not count
        ("val_acc", 0.999, 0.5, 1.0),  # the first step already fell out
    ],
)
def test_alpha_held(key, teacher, tol, expected):
    assert alpha_held(STEPS, key, teacher, tol) == expected


def test_alpha_step_drops_by_hand():
    steps = [
        {"alpha": 0.5, "val_acc": 0.95, "val_acc_start": 0.96},
        {"alpha": 0.1, "val_acc": 0.90, "val_acc_start": 0.93},
        {"alpha": 0.0, "val_acc": 0.94, "val_acc_start": 0.80},
    ]
    drops = alpha_step_drops(steps, teacher_val_acc=0.97)
    # the curve 0.97 (teacher) -> 0.95 -> 0.90 -> 0.94 falls by 2 then 5 points, then rises
    assert drops["alpha_step_drop_pp"] == pytest.approx(5.0)
    # at the replacement: 0.90 at the end of α = 0.1, 0.80 before any fine-tuning
    assert drops["collapse_drop_pp"] == pytest.approx(10.0)
    # steps written before the start accuracy was recorded: the curve only
    old = [{k: v for k, v in s.items() if k != "val_acc_start"} for s in steps]
    assert alpha_step_drops(old, 0.97) == {
        "alpha_step_drop_pp": pytest.approx(5.0),
        "collapse_drop_pp": None,
    }
    # one-shot: the replacement is measured from the teacher
    oneshot = alpha_step_drops([{"alpha": 0.0, "val_acc": 0.9, "val_acc_start": 0.5}], 0.97)
    assert oneshot["alpha_step_drop_pp"] == pytest.approx(7.0)
    assert oneshot["collapse_drop_pp"] == pytest.approx(47.0)


def _data(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    y = torch.randint(0, 3, (n,), generator=g)
    return DeviceData(x, y, [100.0], [50.0], CPU)


def test_noisy_accuracy_without_noise_is_accuracy():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    data = _data()
    data.y = model(data.normalise(data.x)).argmax(1)  # labels the model gets all right
    assert noisy_accuracy(model, data, 0.0, CPU, seed=0) == 1.0
    assert noisy_accuracy(model, data, 5.0, CPU, seed=0) < 0.9


def test_evaluate_record_is_complete_and_finite():
    torch.manual_seed(0)
    teacher = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(512, 3)
    ).eval()
    student = blend.collapse(
        blend.insert(
            __import__("copy").deepcopy(teacher),
            {"3": Sparse(teacher[3], (torch.rand(3, 512) > 0.8).float())},
        )
    )
    history = [{"seconds": 0.5}, {"seconds": 0.25}]
    metrics, _ = evaluate(
        student,
        teacher,
        _data(),
        {"train_acc": 0.99, "val_acc": 0.98},
        history,
        STEPS,
        (1, 8, 8),
        EvalConfig(),
        CPU,
    )
    for key in (
        "test_acc",
        "noisy_test_acc",
        "agreement",
        "teacher_params",
        "student_params",
        "student_params_dense",
        "achieved",
        "teacher_macs",
        "student_macs",
        "epochs",
        "wall_time_s",
        "alpha_hold_train",
        "alpha_hold_val",
    ):
        assert key in metrics and math.isfinite(metrics[key]), key
    assert metrics["student_params"] < metrics["teacher_params"]
    assert metrics["achieved"] == pytest.approx(
        1 - metrics["student_params"] / metrics["teacher_params"]
    )
    assert metrics["epochs"] == 2 and metrics["wall_time_s"] == 0.75
