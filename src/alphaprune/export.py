"""Saving and loading models (teacher and student) with their recipe, without pickled code.

A model file holds a state dict and a JSON *recipe*: the architecture (registry name, classes,
input shape), the input normalisation, and which layers were replaced by which branch and size.
Loading rebuilds the architecture from the registry, swaps in the branches the recipe names, and
loads the weights with ``torch.load(weights_only=True)``, so a file can never run code, and a
student loads without its teacher.

Sparse branches are stored as their kept values plus a bit-packed mask, so a sparse student's
file is physically smaller than the dense one.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from alphaprune.branches import Sparse, build_branch
from alphaprune.errors import UserError
from alphaprune.files import torch_save
from alphaprune.models import build_model

FORMAT = "alphaprune-model"
FORMAT_VERSION = 1


class ModelFileError(UserError, ValueError):
    """A model file is missing, tampered with, or of another format."""


def recipe_for(model_name: str, num_classes: int, shape, mean, std, classes) -> dict[str, Any]:
    """The recipe of an unpruned model; `layers` is filled in when branches replace layers."""
    return {
        "model": {"name": model_name, "num_classes": num_classes, "shape": list(shape)},
        "normalization": {"mean": list(mean), "std": list(std)},  # in stored (uint8) units
        "classes": list(classes),
        "layers": [],
    }


def build_from_recipe(recipe: dict[str, Any]) -> nn.Module:
    """The recipe's architecture, branches in place, with fresh weights."""
    m = recipe["model"]
    c, h, _ = m["shape"]
    model = build_model(m["name"], num_classes=m["num_classes"], in_channels=c, image_size=h)
    for spec in recipe["layers"]:
        layer = model.get_submodule(spec["name"])
        model.set_submodule(spec["name"], build_branch(layer, spec["branch"], spec["size"]))
    return model


def save_model(path: str | Path, model: nn.Module, recipe: dict[str, Any]) -> None:
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    for name, module in model.named_modules():
        if isinstance(module, Sparse):
            _pack_sparse(state, f"{name}.layer.weight")
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
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise ModelFileError(
            f"{path}: refused: the file holds objects other than tensors and plain data "
            f"(possibly code); not loading it ({str(err).splitlines()[0][:120]})"
        ) from None
    except Exception as err:  # noqa: BLE001 - truncated or not a torch file at all
        raise ModelFileError(f"{path}: not a readable model file ({type(err).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not an alphaprune model file")
    if blob.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: format version {blob.get('format_version')}, this alphaprune reads "
            f"{FORMAT_VERSION}"
        )
    try:
        recipe = json.loads(blob["recipe"])
        model = build_from_recipe(recipe)
        state = blob["state_dict"]
        sparse = [(n, m) for n, m in model.named_modules() if isinstance(m, Sparse)]
        for name, module in sparse:
            _unpack_sparse(state, f"{name}.layer.weight", module.layer.weight_mask.shape)
        model.load_state_dict(state)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as err:
        first = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        raise ModelFileError(
            f"{path}: corrupt model file ({type(err).__name__}: {first})"
        ) from None
    for _, module in sparse:  # the prune hook sets `.weight` only at the next forward
        module.layer.weight = module.layer.weight_orig * module.layer.weight_mask
    return model.to(map_location).eval(), recipe


# ------------------------------------------------------------------- sparse: values + bits
_BITS = 1 << torch.arange(8, dtype=torch.uint8)


def _pack_sparse(state: dict[str, Tensor], key: str) -> None:
    mask = state.pop(f"{key}_mask").flatten().bool()
    values = state.pop(f"{key}_orig").flatten()[mask]
    padded = torch.cat([mask, mask.new_zeros(-mask.numel() % 8)]).view(-1, 8)
    state[f"{key}_bits"] = (padded.to(torch.uint8) * _BITS).sum(1, dtype=torch.uint8)
    state[f"{key}_values"] = values


def _unpack_sparse(state: dict[str, Tensor], key: str, shape: torch.Size) -> None:
    bits = state.pop(f"{key}_bits")
    values = state.pop(f"{key}_values")
    mask = ((bits[:, None] & _BITS.to(bits.device)) > 0).flatten()[: shape.numel()]
    weight = values.new_zeros(shape.numel())
    weight[mask] = values
    state[f"{key}_orig"] = weight.view(shape)
    state[f"{key}_mask"] = mask.to(values.dtype).view(shape)
