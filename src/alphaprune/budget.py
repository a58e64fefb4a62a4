"""The allocator: which layers get a branch, and how small, to remove `amount` of the teacher.

`amount` is a fraction of *all* the teacher's parameters (BatchNorm and biases included). The
achieved fraction is at least `amount` and exceeds it by as little as the branch kind allows:

- ``pointwise``: k×k convs become 1×1, largest saving first; the last one chosen is the smallest
  that closes the gap. Only if all k×k convs cannot reach the target do linear maps (Linear and
  1×1 convs) get low-rank pairs, sized as in ``lowrank`` to land close to it.
- ``dwsep``: as ``pointwise``, with depthwise k×k + 1×1 pairs in place of the 1×1 convs (ungrouped
  k×k convs only).
- ``lowrank``: every eligible layer keeps the same fraction of its weights (ranks found by
  bisection on that fraction), then single ranks are raised while the target still holds.
- ``sparse``: global magnitude masks over all eligible weights, through
  ``torch.nn.utils.prune.global_unstructured``, removing exactly the needed count.
- ``channels``: whole channels of the groups `alphaprune.channels` finds, the globally least
  important first (Torch-Pruning's group L2 magnitude, as its global pruning ranks them), the
  fewest that meet the target; with `round_to`, every group keeps a multiple of it, so the
  target is met to within one block of the group that crosses it. The layers that read removed
  channels get branches; the other layers that lose channels (their producers, BatchNorm) are
  listed as `coupled`.
"""

from __future__ import annotations

import copy
import fnmatch
import math
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from alphaprune.branches import (
    BRANCHES,
    Layer,
    LowRank,
    branch_params,
    count_params,
    is_linear_map,
    lowrank_break_even,
)
from alphaprune.channels import ChannelGroup, Counter, channel_groups
from alphaprune.errors import UserError


class BudgetError(UserError, ValueError):
    """The target cannot be reached with the layers allowed to change."""


@dataclass(frozen=True)
class LayerPlan:
    name: str
    branch: str  # pointwise | dwsep | lowrank | sparse
    size: int | None  # rank (lowrank), weights kept (sparse), None (pointwise, dwsep)
    params_before: int
    params_after: int


@dataclass(frozen=True)
class Plan:
    kind: str
    amount: float
    teacher_params: int
    layers: tuple[LayerPlan, ...]
    excluded: tuple[str, ...]
    masks: dict[str, Tensor] = field(default_factory=dict, compare=False, repr=False)
    # channels: the layers that lose channels without a branch (producers, BatchNorm), each
    # group's removed output channels (root -> indices), and the groups left out, with why
    coupled: tuple[LayerPlan, ...] = ()
    removed: dict[str, tuple[int, ...]] = field(default_factory=dict)
    ungrouped: dict[str, str] = field(default_factory=dict)

    @property
    def student_params(self) -> int:
        changed = self.layers + self.coupled
        return self.teacher_params - sum(lp.params_before - lp.params_after for lp in changed)

    @property
    def achieved(self) -> float:
        return 1 - self.student_params / self.teacher_params

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "amount": self.amount,
            "teacher_params": self.teacher_params,
            "student_params": self.student_params,
            "achieved": self.achieved,
            "excluded": list(self.excluded),
            "layers": [asdict(lp) for lp in self.layers],
            **(
                {
                    "coupled": [asdict(lp) for lp in self.coupled],
                    "removed": {root: list(idxs) for root, idxs in self.removed.items()},
                    "ungrouped": self.ungrouped,
                }
                if self.kind == "channels"
                else {}
            ),
        }


# ------------------------------------------------------------------------ layers considered
def execution_order(model: nn.Module, example: Tensor) -> list[str]:
    """Names of Conv2d/Linear layers in the order a forward pass first calls them."""
    order: list[str] = []
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: order.append(name))
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return list(dict.fromkeys(order))


def candidate_layers(
    model: nn.Module, exclude: list[str] | None, example: Tensor
) -> tuple[list[tuple[str, Layer]], list[str]]:
    """Layers the allocator may change, and those it must not (in execution order).

    `exclude` None keeps the first layer and the final classifier (the defaults of the method);
    otherwise it is a list of glob patterns over module names."""
    order = execution_order(model, example)
    if not order:
        raise BudgetError("the model has no Conv2d or Linear layers to prune")
    if exclude is None:
        excluded = list(dict.fromkeys([order[0], order[-1]]))
    else:
        excluded = [n for n in order if any(fnmatch.fnmatchcase(n, pat) for pat in exclude)]
        # A typo would otherwise prune a layer the user meant to keep.
        unmatched = [p for p in exclude if not fnmatch.filter(order, p)]
        if unmatched:
            shown = ", ".join(order[:6]) + (", ..." if len(order) > 6 else "")
            raise BudgetError(
                f"exclude: {', '.join(map(repr, unmatched))} matches no Conv2d/Linear layer "
                f"(glob over layer names such as {shown}; `alphaprune plan` lists them)"
            )
    modules = dict(model.named_modules())
    return [(n, modules[n]) for n in order if n not in excluded], excluded


# -------------------------------------------------------------------------------- allocate
def allocate(
    model: nn.Module,
    kind: str,
    amount: float,
    example: Tensor,
    exclude: list[str] | None = None,
    round_to: int = 1,
) -> Plan:
    """Plan branches that remove at least `amount` of `model`'s parameters (`round_to`: the
    channel block of kind `channels`)."""
    if not 0 < amount < 1:
        raise BudgetError(f"amount must be in (0, 1), got {amount}")
    total = count_params(model)
    need = math.ceil(amount * total)
    layers, excluded = candidate_layers(model, exclude, example)
    branch = BRANCHES.lookup(kind)
    eligible = [(n, m) for n, m in layers if branch.eligible(m)]
    if branch.allocation == "spatial":
        chosen, masks = _spatial(eligible, layers, need, total, amount, kind), {}
    elif branch.allocation == "rank":
        chosen, masks = _lowrank(eligible, need, total, amount, kind), {}
    elif branch.allocation == "mask":
        chosen, masks = _sparse(eligible, need, total, amount)
    elif branch.allocation == "channels":
        return _channels(model, example, excluded, need, total, amount, round_to)
    else:
        raise ValueError(f"branch kind {kind!r}: unknown allocation {branch.allocation!r}")
    return Plan(kind, amount, total, tuple(chosen), tuple(excluded), masks)


def _unreachable(kind: str, amount: float, most: int, total: int) -> BudgetError:
    return BudgetError(
        f"prune.amount {amount:g} is unreachable with branch '{kind}': the layers allowed to "
        f"change can remove at most {most / total:.4f} of the teacher's {total:,} parameters "
        "(prune fewer, or exclude fewer layers)"
    )


def _plan(name: str, layer: Layer, branch: str, size: int | None) -> LayerPlan:
    return LayerPlan(name, branch, size, count_params(layer), branch_params(layer, branch, size))


def _saving(lp: LayerPlan) -> int:
    return lp.params_before - lp.params_after


def _spatial(eligible, layers, need, total: int, amount: float, kind: str) -> list[LayerPlan]:
    """pointwise / dwsep: the `eligible` k×k convs replaced largest saving first; low-rank pairs
    on the linear maps of `layers` only if every k×k conv is not enough."""
    spatial = [_plan(n, m, kind, None) for n, m in eligible]
    spatial = [lp for lp in spatial if _saving(lp) > 0]
    if sum(map(_saving, spatial)) >= need:
        return _largest_first(spatial, need)
    # Every k×k conv is not enough: the rest comes from low-rank pairs on the linear maps.
    rest = need - sum(map(_saving, spatial))
    linear = [(n, m) for n, m in layers if is_linear_map(m) and LowRank.eligible(m)]
    try:
        pairs = _lowrank(linear, rest, total, amount, kind)
    except BudgetError:
        most = sum(map(_saving, spatial)) + sum(
            _saving(_plan(n, m, "lowrank", 1)) for n, m in linear
        )
        raise _unreachable(kind, amount, most, total) from None
    return spatial + pairs


def _largest_first(options: list[LayerPlan], need: int) -> list[LayerPlan]:
    """Largest saving first; once one layer alone closes the gap, the smallest such one."""
    left = sorted(options, key=_saving, reverse=True)
    chosen: list[LayerPlan] = []
    while need > 0:
        closing = [lp for lp in left if _saving(lp) >= need]
        pick = min(closing, key=_saving) if closing else left[0]
        chosen.append(pick)
        left.remove(pick)
        need -= _saving(pick)
    return chosen


def _lowrank(layers, need: int, total: int, amount: float, kind: str) -> list[LayerPlan]:
    """Ranks keeping one common fraction f of each layer's weights, the largest f that still
    removes `need`; then single ranks are raised (cheapest first) while `need` still holds."""
    # From rank full[n] on a pair saves nothing: such a layer keeps no branch at all.
    full = {n: lowrank_break_even(m) + 1 for n, m in layers}

    def ranks(f: float) -> dict[str, int]:
        return {n: max(1, min(full[n], math.floor(f * full[n]))) for n, _ in layers}

    def saved(r: dict[str, int]) -> int:
        return sum(_saving(_plan(n, m, "lowrank", r[n])) for n, m in layers if r[n] < full[n])

    if not layers or saved(ranks(0.0)) < need:
        most = saved(ranks(0.0)) if layers else 0
        raise _unreachable(kind, amount, most, total)
    lo, hi = 0.0, 1.0  # saved(ranks(lo)) >= need > saved(ranks(hi)) (or hi saves nothing)
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if saved(ranks(mid)) >= need else (lo, mid)
    r = ranks(lo)
    by_step = sorted(layers, key=lambda nm: branch_params(nm[1], "lowrank", 1))
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
    return [_plan(n, m, "lowrank", r[n]) for n, m in layers if r[n] < full[n]]


def _sparse(layers, need: int, total: int, amount: float):
    """Global magnitude masks, from ``torch.nn.utils.prune``, on copies of the layers."""
    weights = sum(m.weight.numel() for _, m in layers)
    most = weights - len(layers)  # every layer keeps at least one weight
    if need > most:
        raise _unreachable("sparse", amount, most, total)
    copies = {n: copy.deepcopy(m) for n, m in layers}
    prune.global_unstructured(
        [(c, "weight") for c in copies.values()],
        pruning_method=prune.L1Unstructured,
        amount=need,
    )
    masks = {n: c.weight_mask.detach().clone() for n, c in copies.items()}
    plans = [_plan(n, m, "sparse", int(masks[n].sum())) for n, m in layers]
    return plans, masks


def _channels(model, example, excluded, need: int, total: int, amount: float, round_to: int):
    """The fewest of the globally least important channels that remove `need` parameters."""
    groups, ungrouped = channel_groups(model, example, excluded)
    counter = Counter(model, groups)
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

    def left(n: int) -> int:
        return counter.params({root: len(idxs) for root, idxs in removal(n).items()})

    if not groups or left(len(ranked)) > total - need:
        most = total - left(len(ranked)) if groups else 0
        raise _unreachable("channels", amount, most, total)
    lo, hi = 0, len(ranked)  # left(hi) meets the target; find the fewest channels that do
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if left(mid) <= total - need else (mid + 1, hi)
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
        after = counter.module_params(name, counts)
        lp = LayerPlan(
            name,
            "channels",
            int(masks[name].sum()) if name in readers else None,
            count_params(modules[name]),
            after,
        )
        (layers if name in readers else coupled).append(lp)
    masks = {n: m.bool() for n, m in masks.items() if n in readers}
    return Plan(
        "channels",
        amount,
        total,
        tuple(layers),
        tuple(excluded),
        masks,
        tuple(coupled),
        removed,
        ungrouped,
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
