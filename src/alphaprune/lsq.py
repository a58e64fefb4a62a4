"""Least-squares branch initialisation (``prune.init: lsq``).

Each branch is fitted, in closed form, to reproduce its original layer's output on a calibration
batch of training data, given the inputs the teacher feeds that layer. Only sufficient statistics
(means and second moments, in float64) are accumulated, chunk by chunk, so the calibration batch
never has to be held as patches all at once.

- pointwise: ordinary least squares of the output on the centre-tap inputs, per group;
- dwsep: the depthwise filters from the best rank-one fit of the kernel (``init_pretrained``),
  then ordinary least squares of the output on the depthwise outputs for the 1×1 conv;
- lowrank: reduced-rank regression — the least-squares fit projected on the top-r principal
  directions of its fitted outputs, which is the best rank-r fit (Izenman 1975).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphaprune.branches import (
    Branch,
    DepthwiseSeparable,
    Layer,
    LowRank,
    PointwiseConv,
    _padding,
    init_pretrained,
)

RIDGE = 1e-6  # relative to the mean input variance: only keeps dead (all-zero) inputs solvable


class _Moments:
    """Running sums for a grouped linear regression Y[:, g] ≈ X[:, g] @ B[g] + c[g]."""

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.xx = self.xy = self.yy = None

    def add(self, x: Tensor, y: Tensor) -> None:  # x: (rows, G, Di), y: (rows, G, Do)
        x, y = x.double(), y.double()
        parts = (
            x.sum(0),
            y.sum(0),
            torch.einsum("ngi,ngj->gij", x, x),
            torch.einsum("ngi,ngj->gij", x, y),
            torch.einsum("ngi,ngj->gij", y, y),
        )
        if self.sx is None:
            self.sx, self.sy, self.xx, self.xy, self.yy = parts
        else:
            for name, part in zip(("sx", "sy", "xx", "xy", "yy"), parts, strict=True):
                setattr(self, name, getattr(self, name) + part)
        self.n += x.shape[0]

    def solve(self, intercept: bool, rank: int | None = None) -> tuple[Tensor, Tensor]:
        """B (G, Di, Do) and c (G, Do) minimising ||Y − XB − c||², rank(B[g]) <= rank."""
        n = self.n
        xx, xy = self.xx, self.xy
        mx, my = self.sx / n, self.sy / n
        if intercept:  # centre: the intercept then absorbs the means
            xx = xx - n * mx[:, :, None] * mx[:, None, :]
            xy = xy - n * mx[:, :, None] * my[:, None, :]
        d = xx.shape[-1]
        scale = xx.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
        eye = torch.eye(d, dtype=xx.dtype, device=xx.device)
        b = torch.linalg.solve(xx + RIDGE * scale[:, None, None] * eye, xy)
        if rank is not None and rank < b.shape[-1]:
            fitted = b.transpose(1, 2) @ xx @ b  # (G, Do, Do): covariance of the fitted outputs
            _, vecs = torch.linalg.eigh(fitted)
            v = vecs[..., -rank:]  # top-r directions
            b = b @ v @ v.transpose(1, 2)
        c = my - (mx[:, None, :] @ b).squeeze(1) if intercept else torch.zeros_like(my)
        return b, c


def _design(layer: Layer, branch: Branch, x: Tensor) -> Tensor:
    """Rows of branch inputs as (rows, G, Di), ordered like the layer's output positions."""
    if isinstance(layer, nn.Linear):
        return x.reshape(-1, 1, x.shape[-1])
    if isinstance(branch, PointwiseConv):
        return _grouped_rows(branch.gather(x), layer.groups)
    if isinstance(branch, DepthwiseSeparable):
        return _grouped_rows(branch.depthwise(x), 1)
    before, after = _padding(layer)
    x = F.pad(x, (before[1], after[1], before[0], after[0]))
    cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)
    return cols.transpose(1, 2).reshape(-1, 1, cols.shape[1])  # (N·L, 1, C·kh·kw)


def _targets(layer: Layer, y: Tensor, groups: int) -> Tensor:
    if isinstance(layer, nn.Linear):
        return y.reshape(-1, 1, y.shape[-1])
    return _grouped_rows(y, groups)


def _grouped_rows(t: Tensor, groups: int) -> Tensor:
    """(N, C, H, W) -> (N·H·W, G, C/G): one row per position, channels split by group."""
    n, c, h, w = t.shape
    per_group = c // groups
    return t.reshape(n, groups, per_group, h * w).permute(0, 3, 1, 2).reshape(-1, groups, per_group)


@torch.no_grad()
def fit(
    teacher: nn.Module,
    pairs: dict[str, tuple[Layer, Branch]],
    batches: Iterable[Tensor],
) -> None:
    """Set every branch in `pairs` (layer name -> (original, branch)) to its least-squares fit
    on what `teacher` feeds and produces at that layer over `batches` of normalised inputs."""
    moments = {name: _Moments() for name in pairs}
    for layer, branch in pairs.values():
        if isinstance(branch, DepthwiseSeparable):  # its 1x1 is fitted to these filters
            init_pretrained(branch, layer)
    modules = dict(teacher.named_modules())

    def hook(name: str):
        layer, branch = pairs[name]
        groups = layer.groups if isinstance(branch, PointwiseConv) else 1

        def record(module, inputs, output):
            moments[name].add(_design(layer, branch, inputs[0]), _targets(layer, output, groups))

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in pairs]
    was_training = teacher.training
    teacher.eval()
    try:
        for x in batches:
            teacher(x)
    finally:
        for h in handles:
            h.remove()
        teacher.train(was_training)
    for name, (layer, branch) in pairs.items():
        _assign(branch, layer, moments[name])


def _assign(branch: Branch, layer: Layer, m: _Moments) -> None:
    intercept = branch.bias is not None
    if isinstance(branch, PointwiseConv):
        b, c = m.solve(intercept)  # (G, Cg_in, Cg_out)
        weight = b.transpose(1, 2).reshape_as(branch.conv.weight)
        branch.conv.weight.copy_(weight)
    elif isinstance(branch, DepthwiseSeparable):
        b, c = m.solve(intercept)  # (1, in, out)
        branch.pointwise.weight.copy_(b[0].T.reshape_as(branch.pointwise.weight))
    elif isinstance(branch, LowRank):
        b, c = m.solve(intercept, rank=branch.rank)  # (1, D, out)
        # Exact rank-r factorisation, with √S on both factors: balanced factors keep the
        # gradient of each from scaling with the other's norm (unbalanced ones diverge).
        u, s, vh = torch.linalg.svd(b[0], full_matrices=False)
        r = branch.rank
        root = s[:r].sqrt()
        branch.first.weight.copy_((u[:, :r] * root).T.reshape_as(branch.first.weight))
        branch.second.weight.copy_((vh[:r].T * root).reshape_as(branch.second.weight))
    else:
        raise TypeError(f"no least-squares init for {type(branch).__name__}")
    if intercept:
        branch.bias.copy_(c.reshape(-1))
