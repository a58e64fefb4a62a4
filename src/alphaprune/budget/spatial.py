"""pointwise / dwsep: k×k convs replaced, largest saving first."""

from __future__ import annotations

from alphaprune.branches.base import is_linear_map
from alphaprune.branches.lowrank import LowRank
from alphaprune.budget.lowrank import ranks_for
from alphaprune.budget.plan import BudgetError, LayerPlan, Units


def allocate(eligible, layers, units: Units) -> list[LayerPlan]:
    """pointwise / dwsep: the `eligible` k×k convs replaced largest saving first; low-rank pairs
    on the linear maps of `layers` only if every k×k conv is not enough."""
    spatial = [units.plan(n, m, units.kind, None) for n, m in eligible]
    spatial = [lp for lp in spatial if units.saving(lp) > 0]
    if sum(map(units.saving, spatial)) >= units.need:
        return _largest_first(spatial, units.need, units.saving)
    # Every k×k conv is not enough: the rest comes from low-rank pairs on the linear maps.
    rest = units.need - sum(map(units.saving, spatial))
    linear = [(n, m) for n, m in layers if is_linear_map(m) and LowRank.eligible(m)]
    try:
        pairs = ranks_for(linear, rest, units)
    except BudgetError:
        most = sum(map(units.saving, spatial)) + sum(
            units.saving(units.plan(n, m, "lowrank", 1)) for n, m in linear
        )
        raise units.unreachable(most) from None
    return spatial + pairs


def _largest_first(options: list[LayerPlan], need: int, saving) -> list[LayerPlan]:
    """Largest saving first; once one layer alone closes the gap, the smallest such one."""
    left = sorted(options, key=saving, reverse=True)
    chosen: list[LayerPlan] = []
    while need > 0:
        closing = [lp for lp in left if saving(lp) >= need]
        pick = min(closing, key=saving) if closing else left[0]
        chosen.append(pick)
        left.remove(pick)
        need -= saving(pick)
    return chosen
