"""The model file (teacher and student): a state dict and a JSON *recipe*, written without
pickled code (`save_model`). Reading one back, which rebuilds the architecture with its
branches, is `alphaprune.loading`: the teacher's stage writes a model file and never reads one,
so it does not depend on the branch kinds.

The recipe holds the architecture (registry name, classes, input shape), the input
normalisation, and which layers were replaced by which branch and size (or, for a student
narrowed by `branch: channels`, the narrowing: module, prune function, indices). Each branch
stores its weights in its own form (`Branch.pack`): a sparse one as its kept values plus a
bit-packed mask, so a sparse student's file is physically smaller than the dense one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from alphaprune.branches.base import Branch
from alphaprune.torchfiles import torch_save

FORMAT = "alphaprune-model"
FORMAT_VERSION = 1


def recipe_for(
    model_name: str,
    num_classes: int,
    shape,
    mean=None,
    std=None,
    classes=None,
    plan=None,
    macs: int | None = None,
) -> dict[str, Any]:
    """The recipe of a model built by `models.build_model(model_name)` for inputs of `shape`
    (C, H, W); with `plan`, of its student (`with_plan`). `mean` and `std` are the input
    normalisation in stored units (default: none), `classes` the class names (default: 0, 1, …);
    `macs`, the model's multiply-accumulates for one example, counted once when it is saved so
    that the stages reading it need not count again (`recorded_macs`)."""
    c = shape[0]
    recipe = {
        "model": {"name": model_name, "num_classes": num_classes, "shape": list(shape)},
        **({} if macs is None else {"macs": int(macs)}),
        "normalization": {  # in stored (uint8) units
            "mean": [0.0] * c if mean is None else list(mean),
            "std": [1.0] * c if std is None else list(std),
        },
        "classes": [str(i) for i in range(num_classes)] if classes is None else list(classes),
        "layers": [],
    }
    return recipe if plan is None else with_plan(recipe, plan)


def with_plan(recipe: dict[str, Any], plan, narrowing: list[dict] | None = None) -> dict[str, Any]:
    """`recipe` with the layers `plan` (a `budget.Plan`, not imported: the teacher's stage
    does not depend on the allocator's code) replaced by branches (what loading rebuilds), or,
    for a student narrowed at α = 0, with the `narrowing` record of `channels.narrow` (and the
    blocks it dropped before, whose narrowing was recorded without them)."""
    layers = [{"name": lp.name, "branch": lp.branch, "size": lp.size} for lp in plan.layers]
    if narrowing is not None:
        layers = [spec for spec in layers if spec["branch"] == "blocks"]
        return {**recipe, "layers": layers, "narrowing": narrowing, "plan": plan.to_dict()}
    return {**recipe, "layers": layers, "plan": plan.to_dict()}


def is_student(recipe: dict[str, Any]) -> bool:
    """Whether a model file's recipe is a student's: branches in `layers`, blocks dropped, or
    channels narrowed (a narrowed channel student has no `layers`, only its `narrowing`)."""
    return bool(recipe.get("layers") or recipe.get("narrowing"))


def save_model(path: str | Path, model: nn.Module, recipe: dict[str, Any]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        if isinstance(module, Branch):
            module.pack(state, name)
    torch_save(
        path,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "recipe": json.dumps(recipe),
            "state_dict": state,
        },
    )


def recorded_macs(recipe: dict[str, Any]) -> int | None:
    """The MACs a model file records for one example: a teacher's (`recipe_for(macs=)`), or a
    student's from its plan (the allocator's arithmetic, which tests hold equal to the flop
    counter's count of the student for every branch kind); None if it records none (a file from
    before they were recorded: count them with `alphaprune.costs.count_macs`)."""
    if "plan" in recipe:
        return recipe["plan"].get("student_macs")
    return recipe.get("macs")
