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
    if init == "lsq":
        pairs = {n: (model.get_submodule(n), b) for n, b in branches.items() if b.lsq_fits}
        lsq.fit(teacher, pairs, calibration)
    return blocks.insert_blends(blend.insert(model, branches), dropped)
