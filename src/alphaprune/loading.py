"""Loading a model file (`alphaprune.modelfile`): the architecture rebuilt from its recipe (the
registry's model, the narrowing replayed, the branches of every kind swapped in) and the weights
loaded with ``torch.load(weights_only=True)``, so a file can never run code, and a student loads
without its teacher."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alphaprune import blocks
from alphaprune.branches.base import Branch
from alphaprune.branches.kinds import build_branch
from alphaprune.channels import replay
from alphaprune.errors import FileFormatError
from alphaprune.modelfile import FORMAT, FORMAT_VERSION
from alphaprune.models import build_model
from alphaprune.torchfiles import safe_load


def build_from_recipe(recipe: dict[str, Any]) -> nn.Module:
    """The recipe's architecture, branches in place, with fresh weights."""
    m = recipe["model"]
    c, h, _ = m["shape"]
    model = build_model(m["name"], num_classes=m["num_classes"], in_channels=c, image_size=h)
    # the dropped blocks first: a narrowing was recorded on the student without them
    blocks.drop(model, [spec["name"] for spec in recipe["layers"] if spec["branch"] == "blocks"])
    replay(model, recipe.get("narrowing", []))
    for spec in recipe["layers"]:
        if spec["branch"] == "blocks":
            continue
        layer = model.get_submodule(spec["name"])
        model.set_submodule(spec["name"], build_branch(layer, spec["branch"], spec["size"]))
    return model


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
