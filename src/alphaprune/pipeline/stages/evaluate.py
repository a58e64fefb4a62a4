"""Evaluation of a student against its teacher: accuracy (clean and noisy), agreement, size,
MACs, and "α held". (Latency is timed by `alphaprune latency`, in a job holding the machine alone.)

MACs come from ``torch.utils.flop_counter`` (FLOPs / 2, `alphaprune.costs`), counted when the
model files were written (`modelfile.recorded_macs`) or, for a file that records none, now;
``achieved`` and ``macs_achieved`` are the fractions of the teacher's parameters and MACs the
student removed.
A sparse student is counted by its non-zero parameters (``student_params``) and reported with its
dense count too; its MACs are dense, since a masked layer still runs densely.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import nn

from alphaprune.batches import DeviceData, predict
from alphaprune.branches.base import count_params
from alphaprune.costs import model_macs
from alphaprune.pipeline.params.schema import EvalConfig
from alphaprune.runtime import Runtime


def alpha_held(steps: list[dict], key: str, teacher_acc: float, tolerance_pp: float) -> float:
    """The smallest α down to which every α step's accuracy (`key`) stayed within
    `tolerance_pp` percentage points of the teacher's; 1.0 if the first step already fell out."""
    held = 1.0
    for step in steps:
        if (teacher_acc - step[key]) * 100 > tolerance_pp:
            break
        held = step["alpha"]
    return held


def alpha_step_drops(steps: list[dict], teacher_val_acc: float) -> dict[str, float | None]:
    """How abruptly validation accuracy falls as α moves, in percentage points:

    - ``alpha_step_drop_pp``: the largest fall between consecutive points of the per-α curve
      (each α step's accuracy at its end; the teacher's is the point at α = 1);
    - ``collapse_drop_pp``: the fall when α reached 0, from the end of the last α > 0 step (or
      the teacher) to the collapsed student before any fine-tuning (None when steps.csv has no
      ``val_acc_start``, written since this measure exists).
    Negative values are rises."""
    ends = [teacher_val_acc] + [s["val_acc"] for s in steps]
    curve = max((100 * (a - b) for a, b in itertools.pairwise(ends)), default=0.0)
    final = steps[-1] if steps else {}
    start = final.get("val_acc_start")
    collapse = None
    if final.get("alpha") == 0 and start is not None and math.isfinite(start):
        collapse = 100 * (ends[-2] - start)
    return {"alpha_step_drop_pp": curve, "collapse_drop_pp": collapse}


def noisy_accuracy(model, split: DeviceData, std: float, runtime: Runtime, seed: int) -> float:
    gen = torch.Generator(device=runtime.device).manual_seed(seed)
    correct = torch.zeros((), device=split.y.device, dtype=torch.long)
    model.eval()
    with torch.no_grad(), runtime.autocast():
        for x, y, _ in split.batches(runtime.eval_batch_size):
            noise = torch.randn(x.shape, device=x.device, generator=gen)
            correct += (model(x + std * noise).argmax(1) == y).sum()
    return correct.item() / len(split)


def evaluate(
    student: nn.Module,
    teacher: nn.Module,
    test: DeviceData,
    teacher_metrics: dict,
    history: list[dict],
    steps: list[dict],
    shape: tuple[int, int, int],
    cfg: EvalConfig,
    runtime: Runtime,
    seed: int = 0,
    recipes: tuple[dict, dict] | None = None,
) -> tuple[dict, torch.Tensor]:
    """The metrics of DESIGN.md §5 for one student, and its predicted class per test image;
    `recipes`, the (student, teacher) model files' recipes, whose recorded MACs are used."""
    s_recipe, t_recipe = recipes or (None, None)
    s_logits = predict(student, test, runtime)
    t_logits = predict(teacher, test, runtime)
    s_params, s_dense = count_params(student), count_params(student, dense=True)
    t_params = count_params(teacher)
    metrics = {
        "test_acc": (s_logits.argmax(1) == test.y).float().mean().item(),
        "test_size": len(test),
        "noisy_test_acc": noisy_accuracy(student, test, cfg.noise_std, runtime, seed),
        "teacher_test_acc": (t_logits.argmax(1) == test.y).float().mean().item(),
        "agreement": (s_logits.argmax(1) == t_logits.argmax(1)).float().mean().item(),
        "teacher_params": t_params,
        "student_params": s_params,
        "student_params_dense": s_dense,
        "achieved": 1 - s_params / t_params,
        "teacher_macs": (t_macs := model_macs(teacher, shape, t_recipe)),
        "student_macs": (s_macs := model_macs(student, shape, s_recipe)),
        "macs_achieved": 1 - s_macs / t_macs,
        "epochs": len(history),
        "wall_time_s": sum(row["seconds"] for row in history),
        "alpha_reached": min((s["alpha"] for s in steps if s["alpha"] > 0), default=0.0),
        "alpha_hold_train": alpha_held(
            steps, "train_acc_clean", teacher_metrics["train_acc"], cfg.tolerance_pp
        ),
        "alpha_hold_val": alpha_held(
            steps, "val_acc", teacher_metrics["val_acc"], cfg.tolerance_pp
        ),
        **alpha_step_drops(steps, teacher_metrics["val_acc"]),
    }
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise ValueError(f"non-finite metrics: {', '.join(bad)}")
    return metrics, s_logits.argmax(1)
