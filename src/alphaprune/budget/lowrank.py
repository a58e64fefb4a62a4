"""lowrank: every eligible layer keeps the same fraction of its weights, found by bisection."""

from __future__ import annotations

import math

from alphaprune.branches.lowrank import lowrank_break_even
from alphaprune.budget.plan import LayerPlan, Units


def ranks_for(layers, need: int, units: Units) -> list[LayerPlan]:
    """Ranks keeping one common fraction f of each layer's weights, the largest f that still
    removes `need`; then single ranks are raised (cheapest first) while `need` still holds."""
    # From rank full[n] on a pair saves nothing: such a layer keeps no branch at all.
    full = {n: lowrank_break_even(m) + 1 for n, m in layers}

    def ranks(f: float) -> dict[str, int]:
        return {n: max(1, min(full[n], math.floor(f * full[n]))) for n, _ in layers}

    def saved(r: dict[str, int]) -> int:
        return sum(
            units.saving(units.plan(n, m, "lowrank", r[n])) for n, m in layers if r[n] < full[n]
        )

    if not layers or saved(ranks(0.0)) < need:
        raise units.unreachable(saved(ranks(0.0)) if layers else 0)
    lo, hi = 0.0, 1.0  # saved(ranks(lo)) >= need > saved(ranks(hi)) (or hi saves nothing)
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if saved(ranks(mid)) >= need else (lo, mid)
    r = ranks(lo)
    by_step = sorted(layers, key=lambda nm: units.after(units.plan(*nm, "lowrank", 1)))
    improved = True
    while improved:  # fill the slack left by integer ranks
        improved = False
        for n, _ in by_step:
            if r[n] < full[n]:
                r[n] += 1
                if saved(r) >= need:
                    improved = True
                else:
                    r[n] -= 1
    return [units.plan(n, m, "lowrank", r[n]) for n, m in layers if r[n] < full[n]]
