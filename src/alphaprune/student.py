"""A student in the making: a copy of the teacher whose planned layers are blended with their
initialised branches (see `budget.allocate` for the plan and `blend` for the blend)."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from torch import Tensor, nn

from alphaprune import blend, blocks, lsq
from alphaprune.branches.kinds import build_branch
from alphaprune.budget.plan import Plan

INITS = ("random", "pretrained", "lsq")


def make_student(
    teacher: nn.Module,
    plan: Plan,
    init: str = "random",
    calibration: Iterable[Tensor] | None = None,
) -> nn.Module:
    """A copy of `teacher` with every layer of `plan` blended with its branch, at α = 1.

    `init`: random (the branch layers' default init), pretrained (from the original weights,
    see `Branch.init_pretrained`) or lsq (fitted by least squares to the teacher's outputs at
    each layer on `calibration`, batches of normalised inputs; see `lsq`)."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; known: {', '.join(INITS)}")
    if init == "lsq" and calibration is None:
        raise ValueError("init 'lsq' needs calibration batches")
    model = copy.deepcopy(teacher)
    dropped = plan.dropped_blocks  # each blended with its shortcut: nothing to initialise
    branches = {}
    for lp in plan.layers:
        if lp.branch == "blocks":
            continue
        layer = model.get_submodule(lp.name)
        branch = build_branch(layer, lp.branch, lp.size, plan.masks.get(lp.name))
        branches[lp.name] = branch.to(layer.weight.device)
        if init == "pretrained" or (init == "lsq" and not branch.lsq_fits):
            branch.init_pretrained(layer)
    pairs = {n: (model.get_submodule(n), b) for n, b in branches.items() if b.lsq_fits}
    if init == "lsq" and pairs:
        lsq.fit(teacher, pairs, calibration)
    # the blocks first, traced as the teacher's; a layer of a dropped block's shortcut that loses
    # input channels (an option-A map reading a narrowed stream) is blended where the shortcut
    # runs it, in the block's blend, which it is once the block is dropped
    blocks.insert_blends(model, dropped)
    return blend.insert(model, {_in_shortcut(n, dropped): b for n, b in branches.items()})


def _in_shortcut(name: str, dropped: list[str]) -> str:
    """Where layer `name` runs once the blocks `dropped` are blended with their shortcuts: in
    its block's shortcut (`BlockBlend.branch`, whose layers keep their names in the block)."""
    block = next((b for b in dropped if name.startswith(f"{b}.")), None)
    return name if block is None else f"{block}.branch.{name[len(block) + 1 :]}"
