"""Allocation `blocks`: which whole residual blocks to drop (`alphaprune.blocks`) to remove
`amount` of the parameters or MACs.

Importance is measured, not guessed from weights: a block's damage is how far the network's
logits move on the example batch when it is dropped with the blocks already chosen,
``mean((z' − z)²) / var(z)`` (label-free, the teacher's own outputs as the reference). Blocks are
chosen greedily, the least damage added per unit saved first, the damage of the blocks chosen
with each candidate measured again after each choice (dropping two neighbours hurts more than
each alone): a forward pass per remaining block per choice (on the CPU preset's ResNet-20, five
blocks chosen on 512 images in about 15 s).
"""

from __future__ import annotations

import copy
import fnmatch
import math

import torch
from torch import Tensor, nn

from alphaprune.blocks import Block, BlockError, removable
from alphaprune.branches.base import count_params
from alphaprune.budget.plan import BudgetError, LayerPlan, Plan, Units

KIND = "blocks"


def allocate(
    model: nn.Module, example: Tensor, units: Units, exclude: list[str] | None = None
) -> Plan:
    """The plan that drops the fewest-damage blocks until `units.need` is saved. `exclude`:
    glob patterns over block names (or a layer inside one), blocks kept whole."""
    model = copy.deepcopy(model).eval()
    found = droppable(model)
    check_patterns(model, list(found), exclude)
    blocks = [b for b in found if not kept_whole(b, exclude)]
    shortcuts = {b.name: found[b] for b in blocks}
    plans = {b.name: block_plan(model, b, shortcuts[b.name], units) for b in blocks}
    savings = {n: units.saving(lp) for n, lp in plans.items()}
    most = sum(savings.values())
    if most < units.need:
        raise units.unreachable(most)
    chosen = [n for n, _ in greedy(model, shortcuts, savings, example, units.need)]
    order = list(plans)  # the forward pass's order
    layers = [plans[n] for n in sorted(chosen, key=order.index)]
    excluded = [b.name for b in found if b.name not in plans]
    return units.finish(layers, excluded, {})


def greedy(
    model: nn.Module,
    shortcuts: dict[str, nn.Module],
    savings: dict[str, float],
    example: Tensor,
    need: float = math.inf,
) -> list[tuple[str, float]]:
    """The blocks in the order the greedy choice takes them (the least damage added per unit
    saved first, `savings` per block), each with the damage of it and those before it dropped
    together, until `need` is saved (every block that saves something, by default)."""
    with torch.no_grad():
        reference = model(example)
    chosen: list[tuple[str, float]] = []
    saved, base = 0.0, 0.0  # the damage of the blocks chosen so far, together
    while saved < need:
        taken = [n for n, _ in chosen]
        left = [n for n in savings if n not in taken and savings[n] > 0]
        if not left:
            break
        damage = {n: _damage(model, shortcuts, [*taken, n], example, reference) for n in left}
        # what dropping it adds to the damage done, per unit saved
        best = min(left, key=lambda n: (damage[n] - base) / savings[n])
        chosen.append((best, damage[best]))
        saved, base = saved + savings[best], damage[best]
    return chosen


def logit_damage(out: Tensor, reference: Tensor) -> float:
    """How far the logits `out` moved from `reference`, ``mean((z' − z)²) / var(z)``."""
    return float((out - reference).pow(2).mean() / reference.var().clamp_min(1e-12))


def droppable(model: nn.Module) -> dict[Block, nn.Module]:
    """The blocks of `model` that can be dropped, each with its shortcut (`blocks.removable`),
    or a BlockError saying why none can."""
    found = removable(model)
    if not found:
        raise BlockError(
            f"{type(model).__name__}'s residual additions are all made by its own forward, not "
            "by modules of their own: no block can be swapped for its shortcut"
        )
    return found


def kept_whole(block: Block, exclude: list[str] | None) -> bool:
    """Whether a pattern names the block or a layer of its f (a shortcut's layer stays either
    way: excluding it keeps nothing)."""
    names = [block.name, *block.residual]
    return any(fnmatch.fnmatchcase(n, pat) for n in names for pat in exclude or [])


def check_patterns(model: nn.Module, found: list[Block], exclude: list[str] | None) -> None:
    """A pattern that names nothing a plan may act on is refused, as every kind does. Accepted:
    a block or a module of a block's residual (either keeps that block whole), and any Conv2d
    or Linear layer (kind `blocks+channels` keeps its channels; kind `blocks` has nothing to do
    with one outside a residual, such as the classifier, which presets exclude for every kind).
    A container of blocks (a stage, `layer1`) names none of them: name its blocks, or `layer1.*`,
    which also keeps their layers' channels."""
    names = [b.name for b in found] + [n for b in found for n in b.residual]
    names += [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    unmatched = [p for p in exclude or [] if not fnmatch.filter(names, p)]
    if unmatched:
        shown = ", ".join(b.name for b in found[:6]) + (", ..." if len(found) > 6 else "")
        stages = sorted({p for p in unmatched if any(b.name.startswith(f"{p}.") for b in found)})
        hint = "".join(
            f"; {p!r} holds blocks: {p + '.*'!r} keeps them whole and their layers' channels, "
            f"naming them ({', '.join(b.name for b in found if b.name.startswith(p + '.'))}) "
            "the blocks alone"
            for p in stages
        )
        raise BudgetError(
            f"exclude: {', '.join(map(repr, unmatched))} matches no block, no layer of a "
            f"block's residual and no Conv2d/Linear layer (glob over names such as {shown}; "
            f"`alphaprune plan --branch blocks` lists them){hint}"
        )


def block_plan(model: nn.Module, block: Block, shortcut: nn.Module, units: Units) -> LayerPlan:
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
    return logit_damage(out, reference)
