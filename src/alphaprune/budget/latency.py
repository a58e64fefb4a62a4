"""channels, `target: latency`: the channels to remove for a latency budget, a knapsack over
the groups after HALP's latency-saliency knapsack, on the times a `LatencyTable`
(`budget.latency_table`) predicts.

`knapsack` chooses each group's kept width so that the predicted time saved is at least what
the budget asks, removing the least importance (each group's channels ranked as the channel
allocator ranks them): a multiple-choice knapsack, solved exactly by dynamic programming over
the saving in `RESOLUTION` steps of the need (each option's saving rounded down, so the plan's
predicted saving is never below the need; a plan whose savings exceed the need by less than a
step per group cut can be missed, so "exact" holds to 1/RESOLUTION of the need per group).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

from alphaprune.budget.latency_table import CHECK_TOLERANCE, LatencyTable, candidate_widths
from alphaprune.budget.plan import Unreachable

RESOLUTION = 1000  # the knapsack's steps of the needed saving


# where savings do not add up (pairs, or per layer): the saving is reached in this many steps,
# each a knapsack (HALP's way)
STEPS = 10


def knapsack(
    table: LatencyTable,
    importance: Mapping[str, Sequence[float]],
    need_ms: float,
) -> dict[str, int]:
    """Each group's kept width (root -> width, groups that keep all left out) whose predicted
    saving is at least `need_ms`, removing the least total importance: a group keeping `w` of
    its channels loses its `width - w` least important ones. `importance`: per group root, per
    channel (the groups of the table that are absent here are not pruned).

    Without pairs the groups' savings add up, and one knapsack is exact (to its steps). With
    them (groups that meet at a layer), or per layer (a layer's time depends on the widths of
    both the groups it reads and writes), a group's saving depends on its partners' widths; it is
    then reached in `STEPS` equal steps, as HALP prunes: each step a knapsack over narrowing the
    groups further, each option's saving the prediction's with the other groups at their
    widths so far, and the prediction checked after each step (a step that falls short is
    followed by one more for the rest)."""
    if need_ms <= 0:
        return {}
    roots = [r for r in table.widths if r in importance]
    ranked = {r: [0.0, *itertools.accumulate(sorted(importance[r]))] for r in roots}
    kept = _stepped(table, roots, ranked, need_ms)
    if kept is not None:
        return kept
    most = sum(
        max(
            0.0, *(table.saving_ms(r, w) for w in candidate_widths(table.widths[r], table.round_to))
        )
        for r in roots
    )
    error = table.check_error()
    doubt = (
        f"; but the table does not hold for these groups: {table.check_note()}, so plan by "
        "target macs and measure the speed after"
        if error is not None and abs(error) > CHECK_TOLERANCE
        else ""
    )
    raise Unreachable(
        f"a latency saving of {need_ms:.4g} ms of the teacher's {table.full_ms:.4g} ms on "
        f"{table.engine} is unreachable: the table's groups save at most {most:.4g} ms between "
        f"them, less where they meet at a layer (prune less){doubt}"
    )


def _stepped(table, roots, ranked, need_ms: float) -> dict[str, int] | None:
    """The widths `knapsack` returns, in one step where the groups' savings add up, in `STEPS`
    where they do not (pairs, or a table per layer); None if no plan the table allows saves
    `need_ms`."""
    if table.additive:
        kept = _knapsack_step(table, roots, ranked, {}, need_ms, table.full_ms)
        return None if kept is None else _trimmed(table, ranked, kept, need_ms)
    kept: dict[str, int] | None = {}
    for k in range(1, 2 * STEPS + 1):
        target = table.full_ms - need_ms * min(k, STEPS) / STEPS
        now = table.predict(kept)
        if now > target:
            kept = _knapsack_step(table, roots, ranked, kept, now - target, now)
            if kept is None:
                return None
        elif k >= STEPS:
            break
    met = table.predict(kept) <= table.full_ms - need_ms + 1e-9 * table.full_ms
    return _trimmed(table, ranked, kept, need_ms) if met else None


def _trimmed(table, ranked, kept: dict[str, int], need_ms: float) -> dict[str, int]:
    """`kept` with groups widened again, a block at a time, while the prediction still saves
    `need_ms`: each step gives back the block that restores the most importance. The stepped
    knapsack overshoots the need by up to a block in every step (on the digits CNN, 2.0x
    predicted for 1.43x asked); after this no single block can be given back."""
    kept = dict(kept)
    limit = table.full_ms - need_ms + 1e-9 * table.full_ms
    while True:
        best = None
        for r, w in kept.items():
            wider = next(c for c in candidate_widths(table.widths[r], table.round_to) if c > w)
            trial = {**kept, r: wider}
            if table.predict(trial) <= limit:
                width = table.widths[r]
                regained = ranked[r][width - w] - ranked[r][width - wider]
                if best is None or regained > best[0]:
                    best = (regained, r, wider)
        if best is None:
            return kept
        _, r, wider = best
        if wider >= table.widths[r]:
            del kept[r]
        else:
            kept[r] = wider


def _knapsack_step(table, roots, ranked, kept, need_ms: float, now_ms: float):
    """The widths, each at most its width in `kept`, that save at least `need_ms` of the
    predicted `now_ms` with the least importance lost (`ranked[r][n]`: the importance of group
    r's n least important channels), or None if none do: a multiple-choice knapsack by dynamic
    programming over the saving in `RESOLUTION` steps (each option's saving rounded down, so
    the plan's predicted saving is never below the need)."""
    step = need_ms / RESOLUTION
    options = []  # per group: (bins saved, importance lost, kept width)
    for r in roots:
        width = table.widths[r]
        current = kept.get(r, width)
        opts = [(0, 0.0, current)]
        for w in candidate_widths(width, table.round_to)[:-1]:
            if w >= current:
                continue
            saving = now_ms - table.predict({**kept, r: w})  # the others as they are
            # rounded down (a step's billionth spared for float division's last bit)
            bins = min(RESOLUTION, math.floor(saving / step + 1e-9))
            if bins > 0:
                opts.append((bins, ranked[r][width - w] - ranked[r][width - current], w))
        options.append(opts)
    inf = math.inf
    # best[b]: the least importance lost for a saving of at least b bins (capped at RESOLUTION)
    best = [0.0] + [inf] * RESOLUTION
    choice: list[list[int]] = []
    for opts in options:
        new, pick = [inf] * (RESOLUTION + 1), [0] * (RESOLUTION + 1)
        for b in range(RESOLUTION + 1):
            if best[b] == inf:
                continue
            for i, (bins, lost, _) in enumerate(opts):
                nb = min(RESOLUTION, b + bins)
                if best[b] + lost < new[nb]:
                    new[nb], pick[nb] = best[b] + lost, i * (RESOLUTION + 1) + b
        best = new
        choice.append(pick)
    if best[RESOLUTION] == inf:
        return None
    out, b = dict(kept), RESOLUTION
    for r, opts, pick in zip(reversed(roots), reversed(options), reversed(choice), strict=True):
        i, b = divmod(pick[b], RESOLUTION + 1)
        if opts[i][2] < table.widths[r]:
            out[r] = opts[i][2]
    return {r: out[r] for r in roots if r in out}
