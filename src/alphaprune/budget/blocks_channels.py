"""Allocation `blocks+channels`: whole residual blocks and channels in one student, the split
between depth and width chosen by how far the student's logits move.

The blocks are ranked as `budget.blocks` ranks them (the least damage added per unit saved
first, the damage measured again after each choice). For each number k of them dropped (none,
the first, the first two, ..., up to as many as meet the budget alone), the channels of the
model left are planned for the rest of the budget as `budget.channels` plans them (for target
latency, from the teacher's table with the dropped blocks' layers taking no time:
`table_views.without`). Every split meets the same budget; the plan is the split whose one-shot
student (the blocks dropped, the channels removed) moves the logits least on the calibration
batch, ``mean((z' − z)²) / var(z)``: the currency blocks are already chosen in, so a block is
weighed against the channels that would save as much.

A block whose shortcut has weights (a projection, torchvision's `downsample`) is kept whole: its
shortcut reads the stream whose channels may go, inside a block that is still fading (listed in
the plan's `excluded`). On the option-A CIFAR ResNets every block can go.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch

import torch
from torch import Tensor, nn

from alphaprune import channels as channel_ops
from alphaprune.blocks import drop
from alphaprune.branches.base import count_params
from alphaprune.budget import blocks, channels
from alphaprune.budget.latency_table import LatencyTable
from alphaprune.budget.plan import BudgetError, LayerPlan, Plan, Units, Unreachable, candidates
from alphaprune.budget.table_views import without
from alphaprune.costs import layer_positions

KIND = "blocks+channels"


def allocate(
    model: nn.Module,
    example: Tensor,
    units: Units,
    exclude: list[str] | None = None,
    round_to: int = 1,
    table: LatencyTable | None = None,
    ranking: str = channels.DEFAULT_RANKING,
    dropped_blocks: int | None = None,
) -> Plan:
    """The plan of blocks dropped and channels removed that meets `units` (or `table`'s latency
    budget) and moves the logits on `example` least. `exclude`: glob patterns over layer names
    (a block with a named layer, or named itself, is kept whole); None keeps the first layer and
    the classifier, as kind `channels` does. `dropped_blocks`: the split fixed, that many of the
    ranked blocks dropped (the others are not tried)."""
    if dropped_blocks is not None and dropped_blocks < 0:
        raise BudgetError(f"dropped_blocks must be 0 or more, got {dropped_blocks}")
    model = copy.deepcopy(model).eval()
    found = blocks.droppable(model)
    blocks.check_patterns(model, list(found), exclude)
    kept_whole = [b.name for b in found if b.shortcut or blocks.kept_whole(b, exclude)]
    shortcuts = {b.name: s for b, s in found.items() if b.name not in kept_whole}
    weighted = (nn.Conv2d, nn.Linear)  # the layers a latency table times
    layers_of = {
        b.name: [n for n in b.residual if isinstance(model.get_submodule(n), weighted)]
        for b in found
    }
    plans = {
        b.name: blocks.block_plan(model, b, shortcuts[b.name], units)
        for b in found
        if b.name in shortcuts
    }
    if units.target == "latency":
        if table is None:
            raise BudgetError("target 'latency' needs a latency table (`alphaprune table`)")
        need = units.amount * table.full_ms
        savings = {n: table.full_ms - without(table, layers_of[n]).base_ms for n in plans}
    else:
        need = units.need
        savings = {n: float(units.saving(lp)) for n, lp in plans.items()}
    order = blocks.greedy(model, shortcuts, savings, example, need)
    if dropped_blocks is not None and dropped_blocks > len(order):
        why = (
            f"the first {len(order)} ranked blocks meet the budget alone"
            if len(order) < len(shortcuts)
            else f"only {len(order)} blocks may go (the others are excluded or kept whole)"
        )
        raise BudgetError(f"dropped_blocks {dropped_blocks}: {why}; drop at most {len(order)}")
    with torch.no_grad():
        reference = model(example)
    small = example[:2]  # what the channel groups are traced and planned on
    splits, best = [], None
    tried = range(len(order) + 1) if dropped_blocks is None else [dropped_blocks]
    for k in tried:
        dropped = [n for n, _ in order[:k]]
        left = need - sum(savings[n] for n in dropped)
        model_k = drop(copy.deepcopy(model), dropped)
        try:
            plan_k = (
                _channels(
                    model_k,
                    small,
                    units,
                    exclude,
                    left,
                    round_to,
                    table,
                    [plans[n] for n in dropped],
                    layers_of,
                    ranking,
                )
                if left > 0
                else None
            )
        except Unreachable:  # the channels left cannot make up the rest
            if dropped_blocks is not None:  # the one split asked for: say why it cannot be
                raise
            continue
        if plan_k is not None and plan_k.removed:
            channel_ops.narrow(model_k, plan_k.removed, small)
        with torch.no_grad():
            damage = blocks.logit_damage(model_k(example), reference)
        splits.append({"blocks": dropped, "damage": damage})
        if best is None or damage < best[0]:
            best = (damage, dropped, plan_k)
    if best is None:
        what = {"params": "parameters", "macs": "MACs", "latency": "time"}[units.target]
        total = table.full_ms if units.target == "latency" else units.total
        raise Unreachable(
            f"prune.amount {units.amount:g} (of the {what}) is unreachable with branch "
            f"'{KIND}': dropping all {len(order)} blocks it may drop saves "
            f"{sum(savings[n] for n, _ in order) / total:.4f} of the teacher's {what}, and the "
            "channels left cannot make up the rest (prune fewer, or exclude fewer layers)"
        )
    _, dropped, plan_k = best
    order = list(plans)  # the forward pass's order
    block_layers = [plans[n] for n in sorted(dropped, key=order.index)]
    return _joined(units, block_layers, plan_k, kept_whole, splits, table, layers_of, ranking)


def _channels(
    model_k: nn.Module,
    example: Tensor,
    units: Units,
    exclude: list[str] | None,
    left: float,
    round_to: int,
    table: LatencyTable | None,
    dropped: list[LayerPlan],
    layers_of: dict[str, list[str]],
    ranking: str,
) -> Plan:
    """The channels of `model_k` (the teacher with the blocks `dropped`) that save `left` more
    in `units`' target (for latency, of the table's time, the dropped blocks' layers taking
    none)."""
    positions = layer_positions(model_k, example)
    order = list(positions)
    if exclude is not None:  # the patterns that named only layers of dropped blocks name none
        exclude = [p for p in exclude if fnmatch.filter(order, p)]
    _, excluded = candidates(model_k, exclude, order)
    if units.target == "latency":
        table = without(table, (n for lp in dropped for n in layers_of[lp.name]))
        units_k = dataclasses.replace(units, kind="channels", positions=positions)
        return channels.allocate(model_k, example, excluded, units_k, round_to, table, ranking)
    params = count_params(model_k)
    macs = units.teacher_macs - sum(lp.macs_before - lp.macs_after for lp in dropped)
    total = params if units.target == "params" else macs
    if left >= total:
        raise units.unreachable(0)
    units_k = Units("channels", left / total, units.target, positions, params, macs)
    return channels.allocate(model_k, example, excluded, units_k, round_to)


def _joined(
    units: Units,
    dropped: list[LayerPlan],
    plan_k: Plan | None,
    kept_whole: list[str],
    splits: list[dict],
    table: LatencyTable | None,
    layers_of: dict[str, list[str]],
    ranking: str,
) -> Plan:
    """One plan: the blocks dropped, then the channels of what is left (`plan_k`, None where
    the blocks meet the budget alone: `ranking` is recorded as the recipe asked it)."""
    latency: dict = {}
    if plan_k is not None:
        latency = dict(plan_k.latency)
    elif table is not None:  # blocks alone: the table's view without them
        view = without(table, (n for lp in dropped for n in layers_of[lp.name]))
        latency = channels.prediction(view, {}, ranking)
    if latency:
        latency["blocks"] = [lp.name for lp in dropped]
    return dataclasses.replace(
        units.finish(
            [*dropped, *(plan_k.layers if plan_k else ())],
            [*(plan_k.excluded if plan_k else ()), *kept_whole],
            dict(plan_k.masks) if plan_k else {},
            coupled=plan_k.coupled if plan_k else (),
            removed=dict(plan_k.removed) if plan_k else {},
            ungrouped=dict(plan_k.ungrouped) if plan_k else {},
            latency=latency,
        ),
        kind=KIND,
        splits=tuple(splits),
    )
