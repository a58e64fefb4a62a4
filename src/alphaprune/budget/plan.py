"""A plan and what every allocation shares: which layers are candidates, and the units the
target counts in (`Units`: what a layer's plan saves of it, and the error when it cannot be met).
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import asdict, dataclass, field

from torch import Tensor, nn

from alphaprune.branches.base import Layer, bias_params, count_params
from alphaprune.branches.kinds import BRANCHES, branch_params
from alphaprune.costs import layer_positions
from alphaprune.errors import UserError

TARGETS = ("params", "macs", "latency")
# the kinds whose students lose whole channels at α = 0 (`Plan.removed`), and those that drop
# whole blocks (their `layers` with branch "blocks")
NARROWING = ("channels", "blocks+channels")
DROPPING = ("blocks", "blocks+channels")


class BudgetError(UserError, ValueError):
    """The target cannot be reached with the layers allowed to change."""


class Unreachable(BudgetError):
    """The budget asks more than the layers allowed to change can save (not a bad input: a
    `blocks+channels` split that meets this tries another)."""


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
    target: str = "params"  # what `amount` is a fraction of: params | macs | latency
    teacher_macs: int = 0  # per example, at the plan's input shape
    # target latency: the table's engine, batch and threads, the teacher's measured ms, the
    # student's predicted ms and each narrowed group's (the model's ms with it alone narrowed)
    latency: dict = field(default_factory=dict)
    # blocks+channels: each split of the budget tried (the blocks dropped, in the order they were
    # ranked; the rest in channels) and how far its one-shot student moved the logits
    # (`budget.blocks_channels`)
    splits: tuple[dict, ...] = ()

    @property
    def dropped_blocks(self) -> list[str]:
        """The blocks the student no longer has (kinds `blocks` and `blocks+channels`)."""
        return [lp.name for lp in self.layers if lp.branch == "blocks"]

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
                if self.kind in NARROWING
                else {}
            ),
            **({"latency": self.latency} if self.latency else {}),
            **({"splits": list(self.splits)} if self.splits else {}),
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
    return candidates(model, exclude, execution_order(model, example))


def candidates(model: nn.Module, exclude: list[str] | None, order: list[str]):
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


@dataclass(frozen=True)
class Units:
    """What `amount` is a fraction of (`target`), and what a layer's plan saves in it."""

    kind: str
    amount: float
    target: str  # params | macs
    positions: dict[str, int]  # per layer: MACs = weights × positions
    teacher_params: int
    teacher_macs: int

    @property
    def total(self) -> int:  # latency: counted by its table (`budget.latency_table`), not here
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

    def unreachable(self, most: int) -> Unreachable:
        what = "parameters" if self.target == "params" else "MACs"
        return Unreachable(
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
