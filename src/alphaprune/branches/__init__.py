"""Branches: the cheap parallel replacements of a layer, their sizes and initialisations.

Every branch is a *linear map of the same input* as the layer it replaces. That gives each one an
``equivalent_weight()``: a kernel in the original layer's shape that computes the same output.
The blend uses it to run one convolution with ``α·W + (1−α)·K`` instead of two (see
``blend.py``); the exported student uses the branch's own, physically smaller ``forward``.

Per-layer branch kinds (a layer's plan names one), one module each:

- ``pointwise``: a k×k ``Conv2d`` → a 1×1 ``Conv2d`` reading the original's centre tap, aligned so
  its output has the original's shape for any stride, padding, dilation and groups.
- ``lowrank``: ``Conv2d(k×k, in → r)`` then ``Conv2d(1×1, r → out)``; a ``Linear`` → a rank-r pair.
- ``dwsep``: a k×k ``Conv2d`` → a depthwise k×k conv (one filter per input channel, the original's
  stride, padding and dilation) then a 1×1 conv: about the pointwise cost, with the original's
  receptive field. Its equivalent kernel is ``W[o, i] = P[o, i]·D[i]``.
- ``sparse``: a copy of the layer with a fixed binary mask (``torch.nn.utils.prune``'s reparam).
- ``channels``: a layer that reads channels being removed, those input columns zeroed; at α = 0
  the channels leave every coupled layer (``alphaprune.channels``).
"""

from __future__ import annotations

from torch import Tensor

from alphaprune.branches.base import (
    Branch,
    Layer,
    balanced_factors,
    count_params,
    grouped_rows,
    has_spatial_kernel,
    is_linear_map,
)
from alphaprune.branches.channels import Channels
from alphaprune.branches.dwsep import DepthwiseSeparable
from alphaprune.branches.lowrank import LowRank, lowrank_break_even
from alphaprune.branches.pointwise import PointwiseConv
from alphaprune.branches.sparse import Sparse
from alphaprune.registry import Registry

__all__ = [
    "BRANCHES",
    "Branch",
    "Channels",
    "DepthwiseSeparable",
    "Layer",
    "LowRank",
    "PointwiseConv",
    "Sparse",
    "balanced_factors",
    "branch_params",
    "build_branch",
    "count_params",
    "grouped_rows",
    "has_spatial_kernel",
    "is_linear_map",
    "lowrank_break_even",
]

BRANCHES: Registry[type[Branch]] = Registry("branch kind")
for _cls in (PointwiseConv, LowRank, DepthwiseSeparable, Sparse, Channels):
    BRANCHES.register(_cls.kind)(_cls)


def branch_params(layer: Layer, kind: str, size: int | None) -> int:
    """Student parameters of a `kind` branch for `layer` (size: rank, or weights kept)."""
    return BRANCHES.lookup(kind).cost(layer, size)


def build_branch(layer: Layer, kind: str, size: int | None, mask: Tensor | None = None) -> Branch:
    """A branch for `layer` with the default init of its layers: the `random` init."""
    return BRANCHES.lookup(kind).create(layer, size, mask)
