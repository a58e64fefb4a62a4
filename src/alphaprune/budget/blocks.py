"""Allocation `blocks`: which whole residual blocks to drop (`alphaprune.blocks`) to remove
`amount` of the parameters or MACs.

Importance is measured, not guessed from weights: a block's damage is how far the network's
logits move on the example batch when it is dropped with the blocks already chosen,
``mean((z' − z)²) / var(z)`` (label-free, the teacher's own outputs as the reference). Blocks are
chosen greedily, the least damage per unit saved first, the damage measured again after each
choice (dropping two neighbours hurts more than each alone): a forward pass per remaining block
per choice, a few seconds on a CIFAR ResNet-56 at a calibration batch.
"""

from __future__ import annotations

import copy
import fnmatch

import torch
from torch import Tensor, nn

from alphaprune.blocks import Block, removable_blocks, shortcut_module
from alphaprune.branches.base import count_params
from alphaprune.budget.plan import LayerPlan, Plan, Units

KIND = "blocks"


def allocate(
    model: nn.Module, example: Tensor, units: Units, exclude: list[str] | None = None
) -> Plan:
    """The plan that drops the fewest-damage blocks until `units.need` is saved. `exclude`:
    glob patterns over block names (or a layer inside one), blocks kept whole."""
    model = copy.deepcopy(model).eval()
    found = removable_blocks(model)
    blocks = [b for b in found if not _excluded(b, exclude)]
    shortcuts = {b.name: shortcut_module(model.get_submodule(b.name)) for b in blocks}
    plans = {b.name: _plan(model, b, shortcuts[b.name], units) for b in blocks}
    if not plans:
        raise units.unreachable(0)
    most = sum(units.saving(lp) for lp in plans.values())
    if most < units.need:
        raise units.unreachable(most)
    with torch.no_grad():
        reference = model(example)
    chosen: list[str] = []
    saved = 0
    while saved < units.need:
        left = [n for n in plans if n not in chosen and units.saving(plans[n]) > 0]
        damage = {n: _damage(model, shortcuts, [*chosen, n], example, reference) for n in left}
        best = min(left, key=lambda n: damage[n] / units.saving(plans[n]))
        chosen.append(best)
        saved += units.saving(plans[best])
    order = list(plans)  # the forward pass's order
    layers = [plans[n] for n in sorted(chosen, key=order.index)]
    excluded = [b.name for b in found if b.name not in plans]
    return units.finish(layers, excluded, {})


def _excluded(block: Block, exclude: list[str] | None) -> bool:
    if not exclude:
        return False
    names = [block.name, *(f"{block.name}.{n}" for n in (*block.residual, *block.shortcut))]
    names += [*block.residual, *block.shortcut]
    return any(fnmatch.fnmatchcase(n, pat) for n in names for pat in exclude)


def _plan(model: nn.Module, block: Block, shortcut: nn.Module, units: Units) -> LayerPlan:
    """The block's parameters and MACs (its convs' and linears': weights × positions) before
    and once dropped (its shortcut's)."""
    module = model.get_submodule(block.name)

    def macs(names) -> int:
        total = 0
        for n in names:
            layer = module.get_submodule(n)
            if isinstance(layer, nn.Conv2d | nn.Linear):
                total += layer.weight.numel() * units.positions.get(f"{block.name}.{n}", 0)
        return total

    kept = [n for n, _ in shortcut.named_modules() if n]
    return LayerPlan(
        block.name,
        KIND,
        None,
        count_params(module),
        count_params(shortcut),
        macs([n for n, _ in module.named_modules() if n]),
        macs(kept),
    )


@torch.no_grad()
def _damage(
    model: nn.Module,
    shortcuts: dict[str, nn.Module],
    names: list[str],
    example: Tensor,
    reference: Tensor,
) -> float:
    """How far the logits move with the blocks `names` dropped (the model is restored)."""
    kept = {n: model.get_submodule(n) for n in names}
    try:
        for n in kept:
            model.set_submodule(n, shortcuts[n])
        out = model(example)
    finally:
        for n, module in kept.items():
            model.set_submodule(n, module)
    return float((out - reference).pow(2).mean() / reference.var().clamp_min(1e-12))
