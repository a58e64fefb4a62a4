"""Saving and loading models (teacher and student) with their recipe, without pickled code.

A model file holds a state dict and a JSON *recipe*: the architecture (registry name, classes,
input shape), the input normalisation, and which layers were replaced by which branch and size.
Loading rebuilds the architecture from the registry, swaps in the branches the recipe names, and
loads the weights with ``torch.load(weights_only=True)``, so a file can never run code, and a
student loads without its teacher.

Each branch stores its weights in its own form (`Branch.pack`): a sparse one as its kept values
plus a bit-packed mask, so a sparse student's file is physically smaller than the dense one.

A student narrowed by `branch: channels` is the teacher's architecture with channels removed:
its recipe lists them, module by module (`narrowing`: module, prune function, indices), and
loading replays that with Torch-Pruning's per-module prune functions: no tracing, no pickles.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch_pruning.pruner import function as prune_functions

from alphaprune.branches import Branch, build_branch
from alphaprune.errors import FileFormatError
from alphaprune.files import safe_load, torch_save
from alphaprune.models import build_model

FORMAT = "alphaprune-model"
FORMAT_VERSION = 1

# Torch-Pruning's prune functions this module handles, by the name a recipe stores.
FUNCTIONS = {
    name: getattr(prune_functions, name)
    for name in (
        "prune_conv_out_channels",
        "prune_conv_in_channels",
        "prune_depthwise_conv_out_channels",
        "prune_depthwise_conv_in_channels",
        "prune_batchnorm_out_channels",
        "prune_linear_out_channels",
        "prune_linear_in_channels",
    )
}


def replay(model: nn.Module, done: Iterable[dict]) -> nn.Module:
    """Apply the record of `narrow` to a model of the same architecture (in place): no tracing,
    only Torch-Pruning's per-module prune functions."""
    for step in done:
        if step["fn"] not in FUNCTIONS:
            raise ValueError(f"unknown prune function {step['fn']!r}")
        FUNCTIONS[step["fn"]](model.get_submodule(step["module"]), list(step["idxs"]))
    return model


def recipe_for(
    model_name: str,
    num_classes: int,
    shape,
    mean=None,
    std=None,
    classes=None,
    plan=None,
) -> dict[str, Any]:
    """The recipe of a model built by `models.build_model(model_name)` for inputs of `shape`
    (C, H, W); with `plan`, of its student (`with_plan`). `mean` and `std` are the input
    normalisation in stored units (default: none), `classes` the class names (default: 0, 1, …)."""
    c = shape[0]
    recipe = {
        "model": {"name": model_name, "num_classes": num_classes, "shape": list(shape)},
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
    for a student narrowed at α = 0, with the `narrowing` record of `channels.narrow`."""
    if narrowing is not None:
        return {**recipe, "layers": [], "narrowing": narrowing, "plan": plan.to_dict()}
    layers = [{"name": lp.name, "branch": lp.branch, "size": lp.size} for lp in plan.layers]
    return {**recipe, "layers": layers, "plan": plan.to_dict()}


def build_from_recipe(recipe: dict[str, Any]) -> nn.Module:
    """The recipe's architecture, branches in place, with fresh weights."""
    m = recipe["model"]
    c, h, _ = m["shape"]
    model = build_model(m["name"], num_classes=m["num_classes"], in_channels=c, image_size=h)
    replay(model, recipe.get("narrowing", []))
    for spec in recipe["layers"]:
        layer = model.get_submodule(spec["name"])
        model.set_submodule(spec["name"], build_branch(layer, spec["branch"], spec["size"]))
    return model


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


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """(model, recipe) from a file written by `save_model`; the model is in eval mode."""
    blob = safe_load(
        path, "model file", format=FORMAT, version=FORMAT_VERSION, map_location=map_location
    )
    try:
        recipe = json.loads(blob["recipe"])
        model = build_from_recipe(recipe)
        state = blob["state_dict"]
        branches = [(n, m) for n, m in model.named_modules() if isinstance(m, Branch)]
        for name, module in branches:
            module.unpack(state, name)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise FileFormatError(
            f"{path}: corrupt model file ({type(err).__name__}: {first})"
        ) from None
    for _, module in branches:
        module.loaded()
    return model.to(map_location).eval(), recipe
