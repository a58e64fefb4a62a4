"""channels: whole channels of the groups `alphaprune.channels` finds, the globally least
important first, the fewest that meet the target (in blocks of `round_to`)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from alphaprune.branches.base import count_params
from alphaprune.budget.plan import LayerPlan, Plan, Units
from alphaprune.channels import ChannelGroup, Counter, channel_groups


def allocate(model, example, excluded, units: Units, round_to: int) -> Plan:
    """The fewest of the globally least important channels that remove `units.need`."""
    groups, ungrouped = channel_groups(model, example, excluded)
    counter = Counter(model, groups, units.positions)
    # every channel as (group, channel), least important first (ties: in order)
    ranked = sorted(
        ((imp, gi, c) for gi, g in enumerate(groups) for c, imp in enumerate(g.importance)),
        key=lambda t: t[0],
    )

    def removal(n: int) -> dict[str, tuple[int, ...]]:
        counts = [0] * len(groups)
        for _, gi, _ in ranked[:n]:
            counts[gi] += 1
        return {
            g.root: _least_important(g, _rounded(g.width, k, round_to))
            for g, k in zip(groups, counts, strict=True)
            if _rounded(g.width, k, round_to)
        }

    def saved(n: int) -> int:
        counts = {root: len(idxs) for root, idxs in removal(n).items()}
        return counter.saving(counts, units.target)

    if not groups or saved(len(ranked)) < units.need:
        raise units.unreachable(saved(len(ranked)) if groups else 0)
    lo, hi = 0, len(ranked)  # saved(hi) meets the target; find the fewest channels that do
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if saved(mid) >= units.need else (mid + 1, hi)
    removed = removal(lo)
    counts = {root: len(idxs) for root, idxs in removed.items()}
    modules = dict(model.named_modules())
    changed = {m.module: m for g in groups if g.root in removed for m in g.members}
    readers = {m.module for g in groups if g.root in removed for m in g.readers}
    masks: dict[str, Tensor] = {}
    for g in groups:
        for r in g.readers:
            mask = masks.setdefault(r.module, torch.ones(modules[r.module].weight.shape[1]))
            for c in removed.get(g.root, ()):
                mask[list(r.columns[c])] = 0
    layers, coupled = [], []
    for name in (n for n, _ in model.named_modules() if n in changed):
        lp = LayerPlan(
            name,
            "channels",
            int(masks[name].sum()) if name in readers else None,
            count_params(modules[name]),
            counter.module_params(name, counts),
            counter.module_macs(name, {}),
            counter.module_macs(name, counts),
        )
        (layers if name in readers else coupled).append(lp)
    masks = {n: m.bool() for n, m in masks.items() if n in readers}
    return units.finish(
        layers, excluded, masks, coupled=tuple(coupled), removed=removed, ungrouped=ungrouped
    )


def _rounded(width: int, removed: int, round_to: int) -> int:
    """How many of a group's `width` channels go when the ranking takes `removed` of them: its
    kept width rounded up to a multiple of `round_to`, at least `round_to` (and at least 1)."""
    kept = max(width - removed, 1)
    kept = max(math.ceil(kept / round_to) * round_to, round_to)
    return max(width - kept, 0)


def _least_important(group: ChannelGroup, n: int) -> tuple[int, ...]:
    order = sorted(range(group.width), key=lambda c: group.importance[c])
    return tuple(sorted(order[:n]))
