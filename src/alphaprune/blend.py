"""The blend: ``y = α·original(x) + (1−α)·branch(x)``, one α for the whole network; and collapse.

Both terms are linear maps of the same input, so the blend is computed as *one* call of the
original layer with the blended kernel ``α·W + (1−α)·K`` (K: the branch's equivalent weight).
A blend training step therefore costs about one original layer, not original plus branch, and
is exact: at α = 0 it equals the branch, which is what ``collapse`` keeps.

α is a tensor buffer filled in place, so a ``torch.compile``-d model does not recompile when α
changes, and a checkpoint restores it.

Layer-wise distillation (``set_distill``) trades the fused form for two: in training, each blend
computes the original's output and the branch's separately, blends them (the same value), and
keeps the branch's relative squared error to the original's output on this input as
``distill_term``, for the fit loop to add to its loss (``distill_loss``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from alphaprune.branches.base import Branch, Layer, run_layer


class Blend(nn.Module):
    def __init__(self, original: Layer, branch: Branch):
        super().__init__()
        self.original = original
        self.branch = branch
        self.register_buffer("alpha", torch.ones((), device=original.weight.device))
        self.distill = False  # in training, also compute the layer-wise distillation term
        self.distill_term: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        a = self.alpha
        if self.distill and self.training:
            target = self._run(x, self.original.weight, self.original.bias)
            out = self.branch(x)
            goal = target.detach()  # the branch learns the layer; the layer is not pulled to it
            self.distill_term = (out - goal).pow(2).mean() / goal.pow(2).mean().clamp_min(1e-12)
            return torch.lerp(out, target, a)
        weight = torch.lerp(self.branch.equivalent_weight(), self.original.weight, a)
        return self._run(x, weight, _blend_bias(self.original.bias, self.branch.bias, a))

    def _run(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return run_layer(self.original, x, weight, bias)

    def extra_repr(self) -> str:
        return f"alpha={float(self.alpha):.4g}"


def _blend_bias(orig: Tensor | None, branch: Tensor | None, a: Tensor) -> Tensor | None:
    if orig is None and branch is None:
        return None
    if orig is None:
        return (1 - a) * branch
    if branch is None:
        return a * orig
    return torch.lerp(branch, orig, a)


def blends(model: nn.Module) -> Iterator[tuple[str, Blend]]:
    for name, module in model.named_modules():
        if isinstance(module, Blend):
            yield name, module


def insert(model: nn.Module, branches: dict[str, Branch]) -> nn.Module:
    """Replace each named layer by a Blend of it and its branch (in place; returns `model`)."""
    for name, branch in branches.items():
        original = model.get_submodule(name)
        branch.to(device=original.weight.device, dtype=original.weight.dtype)
        model.set_submodule(name, Blend(original, branch))
    return model


@torch.no_grad()
def set_alpha(model: nn.Module, alpha: float) -> None:
    for _, blend in blends(model):
        blend.alpha.fill_(alpha)


def set_distill(model: nn.Module, on: bool) -> None:
    """Turn the layer-wise distillation term of every blend on or off (see the module doc)."""
    for _, b in blends(model):
        b.distill, b.distill_term = on, None


def distill_loss(model: nn.Module) -> Tensor | None:
    """The mean over blends of their distillation terms from the last training forward pass
    (each the branch's squared error to the original's output, relative to that output's mean
    square), and clears them; None when no blend computed one."""
    terms = []
    for _, b in blends(model):
        if b.distill_term is not None:
            terms.append(b.distill_term)
            b.distill_term = None
    return torch.stack(terms).mean() if terms else None


def collapse(model: nn.Module) -> nn.Module:
    """Drop the originals: each Blend becomes its branch (in place; returns `model`).

    Exact only at α = 0, which is the only α the student is ever taken at. The deepest first:
    a blend inside a block's blend (a layer of its shortcut) is collapsed before the block."""
    for name, blend in sorted(blends(model), key=lambda nb: -nb[0].count(".")):
        model.set_submodule(name, blend.branch)
    return model


# ----------------------------------------------------------------------------- what trains
def set_trainable(model: nn.Module, mode: str) -> list[nn.Parameter]:
    """Freeze all but what `mode` trains; return the trainable parameters.

    branches: only branch weights. student: branches and every layer that survives into the
    student (everything but the originals inside blends). all: everything."""
    originals = {id(p) for _, b in blends(model) for p in b.original.parameters()}
    branch = {id(p) for _, b in blends(model) for p in b.branch.parameters()}
    for p in model.parameters():
        if mode == "branches":
            p.requires_grad_(id(p) in branch)
        elif mode == "student":
            p.requires_grad_(id(p) not in originals)
        elif mode == "all":
            p.requires_grad_(True)
        else:
            raise ValueError(f"unknown trainable mode {mode!r}; use branches, student or all")
    return [p for p in model.parameters() if p.requires_grad]


def frozen_norms(model: nn.Module, mode: str) -> list[nn.Module]:
    """BatchNorm layers that must keep the teacher's statistics: all of them when only branches
    train (a layer's blend holds no BatchNorm, so in the other modes every one trains). The fit
    loop puts these in eval mode after every ``model.train()``. A block being faded
    (`blocks.BlockBlend`) holds its BatchNorms: frozen weights, but in training they normalise
    with the batch's statistics, as the student's layers around them do (`trainable: branches`,
    which would freeze them, is refused for blocks)."""
    if mode != "branches":
        return []
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]
