"""Least-squares branch initialisation (``prune.init: lsq``).

Each branch is fitted, in closed form, to reproduce its original layer's output on a calibration
batch of training data, given the inputs the teacher feeds that layer. Only sufficient statistics
(means and second moments, in float64) are accumulated, chunk by chunk, so the calibration batch
never has to be held as patches all at once.

- pointwise: ordinary least squares of the output on the centre-tap inputs, per group;
- dwsep: the depthwise filters from the best rank-one fit of the kernel (`init_pretrained`),
  then ordinary least squares of the output on the depthwise outputs for the 1×1 conv;
- lowrank: reduced-rank regression — the least-squares fit projected on the top-r principal
  directions of its fitted outputs, which is the best rank-r fit (Izenman 1975).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from alphaprune.branches.base import Branch, Layer, grouped_rows

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


def _targets(layer: Layer, y: Tensor, groups: int) -> Tensor:
    if isinstance(layer, nn.Linear):
        return y.reshape(-1, 1, y.shape[-1])
    return grouped_rows(y, groups)


@torch.no_grad()
def fit(
    teacher: nn.Module,
    pairs: dict[str, tuple[Layer, Branch]],
    batches: Iterable[Tensor],
) -> None:
    """Set every branch in `pairs` (layer name -> (original, branch)) to its least-squares fit
    on what `teacher` feeds and produces at that layer over `batches` of normalised inputs.
    Each branch kind says what its regressors are and how the fit becomes its weights
    (`Branch.lsq_inputs`, `lsq_assign`)."""
    moments = {name: _Moments() for name in pairs}
    for layer, branch in pairs.values():
        branch.lsq_prepare(layer)
    modules = dict(teacher.named_modules())

    def hook(name: str):
        layer, branch = pairs[name]
        groups = branch.lsq_groups(layer)

        def record(module, inputs, output):
            x = branch.lsq_inputs(layer, inputs[0])
            moments[name].add(x, _targets(layer, output, groups))

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
    for name, (_, branch) in pairs.items():
        intercept = branch.bias is not None
        b, c = moments[name].solve(intercept, rank=branch.lsq_rank)
        branch.lsq_assign(b)
        if intercept:
            branch.bias.copy_(c.reshape(-1))
