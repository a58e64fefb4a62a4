"""The allocator: which layers get a branch, and how small, to remove `amount` of the teacher.

`amount` is a fraction of what `target` counts: ``params``, *all* the teacher's parameters
(BatchNorm and biases included), or ``macs``, its multiply-accumulates for one example at the
example's shape (``torch.utils.flop_counter``; a layer's are its weights times the positions it
is applied at, `alphaprune.costs`). Every plan reports both fractions. The achieved fraction of
the target is at least `amount` and exceeds it by as little as the branch kind allows:

- ``pointwise``: k×k convs become 1×1, largest saving first; the last one chosen is the smallest
  that closes the gap. Only if all k×k convs cannot reach the target do linear maps (Linear and
  1×1 convs) get low-rank pairs, sized as in ``lowrank`` to land close to it.
- ``dwsep``: as ``pointwise``, with depthwise k×k + 1×1 pairs in place of the 1×1 convs (ungrouped
  k×k convs only).
- ``lowrank``: every eligible layer keeps the same fraction of its weights (ranks found by
  bisection on that fraction), then single ranks are raised while the target still holds.
- ``sparse``: global magnitude masks over all eligible weights, through
  ``torch.nn.utils.prune.global_unstructured``, removing exactly the needed count (of
  parameters only: a masked layer runs densely, so its MACs do not fall).
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

from alphaprune.branches.base import Layer, bias_params, count_params, is_linear_map
from alphaprune.branches.kinds import BRANCHES, branch_params
from alphaprune.branches.lowrank import LowRank, lowrank_break_even
from alphaprune.channels import ChannelGroup, Counter, channel_groups
from alphaprune.costs import count_macs, layer_positions
from alphaprune.errors import UserError

TARGETS = ("params", "macs")


class BudgetError(UserError, ValueError):
    """The target cannot be reached with the layers allowed to change."""


@dataclass(frozen=True)
class LayerPlan:
    name: str
    branch: str  # pointwise | dwsep | lowrank | sparse
    size: int | None  # rank (lowrank), weights kept (sparse), None (pointwise, dwsep)
    params_before: int
    params_after: int
    macs_before: int = 0  # per example, at the plan's input shape
    macs_after: int = 0


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
    target: str = "params"  # what `amount` is a fraction of: params | macs
    teacher_macs: int = 0  # per example, at the plan's input shape

    @property
    def student_params(self) -> int:
        changed = self.layers + self.coupled
        return self.teacher_params - sum(lp.params_before - lp.params_after for lp in changed)

    @property
    def student_macs(self) -> int:
        changed = self.layers + self.coupled
        return self.teacher_macs - sum(lp.macs_before - lp.macs_after for lp in changed)

    @property
    def achieved(self) -> float:
        """The fraction of the teacher's parameters the student no longer has."""
        return 1 - self.student_params / self.teacher_params

    @property
    def macs_achieved(self) -> float:
        """The fraction of the teacher's MACs the student no longer does."""
        return 1 - self.student_macs / self.teacher_macs

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "amount": self.amount,
            "target": self.target,
            "teacher_params": self.teacher_params,
            "student_params": self.student_params,
            "achieved": self.achieved,
            "teacher_macs": self.teacher_macs,
            "student_macs": self.student_macs,
            "macs_achieved": self.macs_achieved,
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
    return list(layer_positions(model, example))


def candidate_layers(
    model: nn.Module, exclude: list[str] | None, example: Tensor
) -> tuple[list[tuple[str, Layer]], list[str]]:
    """Layers the allocator may change, and those it must not (in execution order).

    `exclude` None keeps the first layer and the final classifier (the defaults of the method);
    otherwise it is a list of glob patterns over module names."""
    return _candidates(model, exclude, execution_order(model, example))


def _candidates(model: nn.Module, exclude: list[str] | None, order: list[str]):
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
    target: str = "params",
    *,
    teacher_macs: int | None = None,
) -> Plan:
    """Plan branches that remove at least `amount` of `model`'s parameters (`target` "params")
    or of its MACs for one example of `example`'s shape ("macs"); `round_to`: the channel block
    of kind `channels`; `teacher_macs`: the model's MACs for one example if known (a model file
    records them), else counted with `torch.utils.flop_counter` (whose first use imports
    `torch._dynamo`: 1.5 s a process)."""
    if not 0 < amount < 1:
        raise BudgetError(f"amount must be in (0, 1), got {amount}")
    if target not in TARGETS:
        raise BudgetError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    branch = BRANCHES.lookup(kind)
    if target == "macs" and branch.allocation == "mask":
        raise BudgetError(
            f"target 'macs' cannot be met with branch {kind!r}: a masked layer still runs "
            "densely, so its MACs do not fall (use target 'params', or a structured branch)"
        )
    positions = layer_positions(model, example)
    macs = count_macs(model, example) if teacher_macs is None else teacher_macs
    units = _Units(kind, amount, target, positions, count_params(model), macs)
    layers, excluded = _candidates(model, exclude, list(positions))
    eligible = [(n, m) for n, m in layers if branch.eligible(m)]
    if branch.allocation == "spatial":
        chosen, masks = _spatial(eligible, layers, units), {}
    elif branch.allocation == "rank":
        chosen, masks = _lowrank(eligible, units.need, units), {}
    elif branch.allocation == "mask":
        chosen, masks = _sparse(eligible, units)
    elif branch.allocation == "channels":
        return _channels(model, example, excluded, units, round_to)
    else:
        raise ValueError(f"branch kind {kind!r}: unknown allocation {branch.allocation!r}")
    return units.finish(chosen, excluded, masks)


@dataclass(frozen=True)
class _Units:
    """What `amount` is a fraction of (`target`), and what a layer's plan saves in it."""

    kind: str
    amount: float
    target: str  # params | macs
    positions: dict[str, int]  # per layer: MACs = weights × positions
    teacher_params: int
    teacher_macs: int

    @property
    def total(self) -> int:
        return self.teacher_params if self.target == "params" else self.teacher_macs

    @property
    def need(self) -> int:
        return math.ceil(self.amount * self.total)

    def plan(self, name: str, layer: Layer, branch: str, size: int | None) -> LayerPlan:
        after = branch_params(layer, branch, size)
        macs = layer.weight.numel() * self.positions[name]
        if BRANCHES.lookup(branch).allocation != "mask":  # a masked layer runs densely
            after_macs = (after - bias_params(layer)) * self.positions[name]
        else:
            after_macs = macs
        return LayerPlan(name, branch, size, count_params(layer), after, macs, after_macs)

    def after(self, lp: LayerPlan) -> int:
        return lp.params_after if self.target == "params" else lp.macs_after

    def saving(self, lp: LayerPlan) -> int:
        before = lp.params_before if self.target == "params" else lp.macs_before
        return before - self.after(lp)

    def unreachable(self, most: int) -> BudgetError:
        what = "parameters" if self.target == "params" else "MACs"
        return BudgetError(
            f"prune.amount {self.amount:g} (of the {what}) is unreachable with branch "
            f"'{self.kind}': the layers allowed to change can remove at most "
            f"{most / self.total:.4f} of the teacher's {self.total:,} {what} (prune fewer, or "
            "exclude fewer layers)"
        )

    def finish(self, layers, excluded, masks, **channels) -> Plan:
        return Plan(
            self.kind,
            self.amount,
            self.teacher_params,
            tuple(layers),
            tuple(excluded),
            masks,
            target=self.target,
            teacher_macs=self.teacher_macs,
            **channels,
        )


def _spatial(eligible, layers, units: _Units) -> list[LayerPlan]:
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
        pairs = _lowrank(linear, rest, units)
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


def _lowrank(layers, need: int, units: _Units) -> list[LayerPlan]:
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


def _sparse(layers, units: _Units):
    """Global magnitude masks, from ``torch.nn.utils.prune``, on copies of the layers."""
    weights = sum(m.weight.numel() for _, m in layers)
    most = weights - len(layers)  # every layer keeps at least one weight
    if units.need > most:
        raise units.unreachable(most)
    copies = {n: copy.deepcopy(m) for n, m in layers}
    prune.global_unstructured(
        [(c, "weight") for c in copies.values()],
        pruning_method=prune.L1Unstructured,
        amount=units.need,
    )
    masks = {n: c.weight_mask.detach().clone() for n, c in copies.items()}
    plans = [units.plan(n, m, "sparse", int(masks[n].sum())) for n, m in layers]
    return plans, masks


def _channels(model, example, excluded, units: _Units, round_to: int) -> Plan:
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
