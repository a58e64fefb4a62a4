"""channels: whole channels of the groups `alphaprune.channels` finds. For parameters and MACs,
the globally least important first, the fewest that meet the target (in blocks of `round_to`);
for latency, the least importance lost for the time the table says they save
(`budget.latency.knapsack`, in the table's blocks)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from alphaprune.branches.base import count_params
from alphaprune.budget.channel_costs import Counter
from alphaprune.budget.latency import knapsack
from alphaprune.budget.latency_table import LatencyTable
from alphaprune.budget.plan import BudgetError, LayerPlan, Plan, Units, Unreachable
from alphaprune.budget.table_views import named_as
from alphaprune.channels import ChannelGroup, channel_groups

# how a latency target chooses channels: the knapsack on Torch-Pruning's normalised importance
# or on the magnitude summed over each group's layers (`ChannelGroup.summed`), or Torch-Pruning's
# global ranking
RANKINGS = ("knapsack", "knapsack_summed", "global")
# What a `target: latency` plan ranks by when none is named. On the CPU CIFAR-10 front
# (docs/results.md, 3 seeds), the summed knapsack tied the normalised one at 1.5x and 2x (+0.58,
# -0.51 points) and was 9.21 points [+7.08, +11.35] more accurate at 3x, where the normalised
# importance cut a stage's stream to 8 of 64 channels.
DEFAULT_RANKING = "knapsack_summed"


def allocate(
    model,
    example,
    excluded,
    units: Units,
    round_to: int,
    table: LatencyTable | None = None,
    ranking: str = DEFAULT_RANKING,
) -> Plan:
    """The fewest of the globally least important channels that remove `units.need`; for
    `units.target` "latency", the channels whose removal saves `units.amount` of the `table`'s
    time: with the least importance lost (`ranking` "knapsack": `latency.knapsack`;
    "knapsack_summed": the same on each group's summed magnitude), or the
    fewest of the globally least important whose predicted saving is enough ("global":
    Torch-Pruning's own allocation, its ratio set by the table's prediction)."""
    groups, ungrouped = channel_groups(model, example, excluded)
    if units.target == "latency":
        removed, predicted = _for_latency(groups, units, table, ranking)
    else:
        counter = Counter(model, groups, units.positions)
        saved = lambda counts: counter.saving(counts, units.target)  # noqa: E731
        removed = _by_global_rank(groups, units.need, saved, round_to)
        if removed is None:
            raise units.unreachable(saved(_all_but_blocks(groups, round_to)) if groups else 0)
        predicted = {}
    return _plan(model, groups, units, removed, excluded, ungrouped, predicted)


def _for_latency(groups, units: Units, table: LatencyTable | None, ranking: str):
    if ranking not in RANKINGS:
        raise BudgetError(f"ranking must be one of {', '.join(RANKINGS)}, got {ranking!r}")
    if table is None:
        raise BudgetError("target 'latency' needs a latency table (`alphaprune table`)")
    table = named_as(table, groups)  # a root dropped with its block: another layer names it
    unknown = [g.root for g in groups if g.root not in table.widths]
    if unknown:
        raise BudgetError(
            f"the latency table has no timings for the groups {', '.join(unknown)}: it was "
            "measured on another model (or other excluded layers); measure it again"
        )
    other = [g.root for g in groups if table.widths[g.root] != g.width]
    if other:
        raise BudgetError(
            f"the latency table's widths of {', '.join(other)} are not this model's: it was "
            "measured on another model; measure it again"
        )
    need = units.amount * table.full_ms
    if ranking.startswith("knapsack"):
        summed = ranking == "knapsack_summed"
        kept = knapsack(table, {g.root: g.summed if summed else g.importance for g in groups}, need)
    else:
        width = {g.root: g.width for g in groups}

        def saved(counts: dict[str, int]) -> float:
            return table.full_ms - table.predict({r: width[r] - n for r, n in counts.items()})

        removed = _by_global_rank(groups, need, saved, table.round_to)
        if removed is None:
            most = saved(_all_but_blocks(groups, table.round_to))
            raise Unreachable(
                f"a latency saving of {need:.4g} ms of the teacher's {table.full_ms:.4g} ms on "
                f"{table.engine} is unreachable by global ranking: at most {most:.4g} ms "
                "predicted (prune less)"
            )
        kept = {r: width[r] - len(idxs) for r, idxs in removed.items()}
    if table.predict(kept) <= 0:
        # seen at batch 1 on ResNet-18, whose pair corrections outweigh the teacher's time
        # (docs/benchmarks.md): the table's own check says how far it is off
        check = f"; {table.check_note()}" if table.check is not None else ""
        raise Unreachable(
            f"the latency table predicts no time left for prune.amount {units.amount:g}: it "
            f"cannot predict that far (prune less, or budget by target macs){check}"
        )
    by_root = {g.root: g for g in groups}
    removed = {r: _least_important(by_root[r], by_root[r].width - k) for r, k in kept.items()}
    return removed, prediction(table, kept, ranking)


def prediction(table: LatencyTable, kept: dict[str, int], ranking: str) -> dict:
    """What a latency plan records of its table: the engine, the teacher's and the student's
    time (each group `root` keeping `kept[root]` channels), each narrowed group's, the check."""
    return {
        "ranking": ranking,
        "engine": table.engine,
        "batch": table.batch,
        "threads": table.threads,
        "machine_cpu": table.conditions.get("machine_cpu"),  # where the table was measured
        "teacher_ms": table.full_ms,
        "student_ms": table.predict(kept),
        "groups_ms": {r: table.group_ms(r, k) for r, k in kept.items()},
        "table_check_error": table.check_error(),  # see LatencyTable.check
        "table_fixed": table.fixed,  # the share of the time taken not to shrink (per layer)
        "table_check": table.check_note(),
    }


def _all_but_blocks(groups, round_to: int) -> dict[str, int]:
    """Each group's most removable channels: all but one block (`_rounded`)."""
    return {g.root: _rounded(g.width, g.width, round_to) for g in groups}


def _by_global_rank(groups, need, saved, round_to: int) -> dict[str, tuple[int, ...]] | None:
    """The fewest of the globally least important channels (rounded per group) whose removal
    saves at least `need` (`saved`: per group root, how many channels go -> the saving), or None
    if removing all it may does not. A bisection: exact where the saving grows with every
    channel removed (parameters, MACs, a table without pairs); a table's pair corrections can
    make it dip, and then the plan found meets the need but may not be the fewest."""
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

    def saved_by(n: int):
        return saved({root: len(idxs) for root, idxs in removal(n).items()})

    if not groups or saved_by(len(ranked)) < need:
        return None
    lo, hi = 0, len(ranked)  # saved_by(hi) meets the target; find the fewest channels that do
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if saved_by(mid) >= need else (mid + 1, hi)
    return removal(lo)


def _plan(model, groups, units: Units, removed, excluded, ungrouped, predicted) -> Plan:
    """The plan that removes `removed` (root -> its channels): the readers get branches, the
    other layers that lose channels are `coupled`."""
    counter = Counter(model, groups, units.positions)
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
        layers,
        excluded,
        masks,
        coupled=tuple(coupled),
        removed=removed,
        ungrouped=ungrouped,
        latency=predicted,
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
