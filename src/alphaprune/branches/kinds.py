"""Every branch kind by name (`BRANCHES`), and what asks a kind by its name: its cost for a
layer (`branch_params`) and a branch of it (`build_branch`). Adding a kind: a module beside
this one, registered below."""

from __future__ import annotations

from torch import Tensor

from alphaprune.branches.base import Branch, Layer
from alphaprune.branches.channels import Channels
from alphaprune.branches.dwsep import DepthwiseSeparable
from alphaprune.branches.lowrank import LowRank
from alphaprune.branches.pointwise import PointwiseConv
from alphaprune.branches.sparse import Sparse
from alphaprune.registry import Registry

BRANCHES: Registry[type[Branch]] = Registry("branch kind")
for _cls in (PointwiseConv, LowRank, DepthwiseSeparable, Sparse, Channels):
    BRANCHES.register(_cls.kind)(_cls)

# Every kind a recipe can name: the branches of layers; `blocks`, whole residual blocks faded
# to their shortcuts (`alphaprune.blocks`; a block, not a layer, so not a `Branch`); and
# `blocks+channels`, both in one student.
KINDS = (*BRANCHES, "blocks", "blocks+channels")


def branch_params(layer: Layer, kind: str, size: int | None) -> int:
    """Student parameters of a `kind` branch for `layer` (size: rank, or weights kept)."""
    return BRANCHES.lookup(kind).cost(layer, size)


def build_branch(layer: Layer, kind: str, size: int | None, mask: Tensor | None = None) -> Branch:
    """A branch for `layer` with the default init of its layers: the `random` init."""
    return BRANCHES.lookup(kind).create(layer, size, mask)
