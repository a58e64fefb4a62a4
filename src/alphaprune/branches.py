"""Branches: the cheap parallel replacements of a layer, their sizes and initialisations.

Every branch is a *linear map of the same input* as the layer it replaces. That gives each one an
``equivalent_weight()``: a kernel in the original layer's shape that computes the same output.
The blend uses it to run one convolution with ``α·W + (1−α)·K`` instead of two (see
``blend.py``); the exported student uses the branch's own, physically smaller ``forward``.

Per-layer branch types (a layer's plan names one):

- ``pointwise``: a k×k ``Conv2d`` → a 1×1 ``Conv2d`` reading the original's centre tap, aligned so
  its output has the original's shape for any stride, padding, dilation and groups.
- ``lowrank``: ``Conv2d(k×k, in → r)`` then ``Conv2d(1×1, r → out)``; a ``Linear`` → a rank-r pair.
- ``dwsep``: a k×k ``Conv2d`` → a depthwise k×k conv (one filter per input channel, the original's
  stride, padding and dilation) then a 1×1 conv: about the pointwise cost, with the original's
  receptive field. Its equivalent kernel is ``W[o, i] = P[o, i]·D[i]``.
- ``sparse``: a copy of the layer with a fixed binary mask (``torch.nn.utils.prune``'s reparam).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import prune

Layer = nn.Conv2d | nn.Linear


def _bias_params(layer: Layer) -> int:
    return 0 if layer.bias is None else layer.bias.numel()


def layer_params(layer: nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters())


def is_linear_map(layer: nn.Module) -> bool:
    """Linear layers and ungrouped 1×1 convs: both are matrices over channels."""
    if isinstance(layer, nn.Linear):
        return True
    return isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and layer.groups == 1


def has_spatial_kernel(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Conv2d) and layer.kernel_size != (1, 1)


class Branch(nn.Module):
    """A branch: ``forward`` is the student's layer; ``equivalent_weight`` the same map as a
    kernel in the original layer's shape. ``bias`` is the branch's bias (or None)."""

    kind: str

    def equivalent_weight(self) -> Tensor:
        raise NotImplementedError

    @property
    def bias(self) -> Tensor | None:
        raise NotImplementedError

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


# ---------------------------------------------------------------------------------- pointwise
def _padding(conv: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int]]:
    """(before, after) zeros the conv adds, per spatial dimension (H, W)."""
    if isinstance(conv.padding, str):
        # torch keeps 'same'/'valid' as [W_before, W_after, H_before, H_after].
        r = conv._reversed_padding_repeated_twice
        return (r[2], r[0]), (r[3], r[1])
    return tuple(conv.padding), tuple(conv.padding)


class PointwiseConv(Branch):
    """A 1×1 conv standing in for a k×k one: output[i] = W·input[i·s − p + d·c] where c is the
    centre tap ((k−1)//2), reading zeros outside the input, exactly as the k×k conv's centre tap
    does. Input is shifted (padded or cropped with one ``F.pad``) only when that is needed."""

    kind = "pointwise"

    @staticmethod
    def cost(layer: Layer, size: int | None) -> int:
        return layer.out_channels * layer.in_channels // layer.groups + _bias_params(layer)

    @classmethod
    def create(cls, layer: Layer, size: int | None, mask: Tensor | None = None) -> PointwiseConv:
        return cls(layer)

    def __init__(self, like: nn.Conv2d):
        super().__init__()
        if like.padding_mode != "zeros":
            raise ValueError("pointwise branches support padding_mode='zeros' only")
        self.conv = nn.Conv2d(
            like.in_channels,
            like.out_channels,
            1,
            stride=like.stride,
            groups=like.groups,
            bias=like.bias is not None,
        )
        self.kernel_size = like.kernel_size
        self.stride = like.stride
        self.dilation = like.dilation
        self.taps = tuple((k - 1) // 2 for k in like.kernel_size)
        self.left, self.right = _padding(like)
        # Offset of the row the centre tap reads for output row 0.
        self.offset = tuple(
            -p + d * c for p, d, c in zip(self.left, self.dilation, self.taps, strict=True)
        )

    def _out_size(self, n: int, dim: int) -> int:
        k, s, d = self.kernel_size[dim], self.stride[dim], self.dilation[dim]
        return (n + self.left[dim] + self.right[dim] - d * (k - 1) - 1) // s + 1

    def _align(self, x: Tensor) -> Tensor:
        """Shift `x` so that a plain strided 1×1 conv reads the centre tap's rows/columns."""
        pads = []  # F.pad order: last dim first, (before, after); negative values crop
        needed = False
        for dim in (1, 0):
            n = x.shape[-2 + dim]
            out = self._out_size(n, dim)
            o, s = self.offset[dim], self.stride[dim]
            after = o + (out - 1) * s + 1 - n
            natural = (n - 1) // s + 1  # what a plain strided 1×1 conv would give
            needed = needed or o != 0 or after > 0 or natural != out
            pads += [-o, after]
        return F.pad(x, pads) if needed else x

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(self._align(x))

    def gather(self, x: Tensor) -> Tensor:
        """The inputs the branch reads, (N, C, H_out, W_out): what a least-squares fit needs."""
        return self._align(x)[..., :: self.stride[0], :: self.stride[1]]

    def equivalent_weight(self) -> Tensor:
        (kh, kw), (ch, cw) = self.kernel_size, self.taps
        return F.pad(self.conv.weight, (cw, kw - 1 - cw, ch, kh - 1 - ch))

    @property
    def bias(self) -> Tensor | None:
        return self.conv.bias


# ----------------------------------------------------------------------------------- lowrank
def lowrank_break_even(layer: Layer) -> int:
    """Largest rank whose pair has strictly fewer weights than the layer."""
    fan_in, out = _fan_in(layer), _out(layer)
    return (fan_in * out - 1) // (fan_in + out)


def _fan_in(layer: Layer) -> int:
    if isinstance(layer, nn.Linear):
        return layer.in_features
    return layer.in_channels * math.prod(layer.kernel_size) // layer.groups


def _out(layer: Layer) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


class LowRank(Branch):
    """A rank-r factorisation: ``first`` (the original's geometry, in → r, no bias) then a
    1×1 / Linear ``second`` (r → out, with the original's bias)."""

    kind = "lowrank"

    @staticmethod
    def cost(layer: Layer, size: int | None) -> int:
        return size * (_fan_in(layer) + _out(layer)) + _bias_params(layer)

    @classmethod
    def create(cls, layer: Layer, size: int | None, mask: Tensor | None = None) -> LowRank:
        return cls(layer, size)

    def __init__(self, like: Layer, rank: int):
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        has_bias = like.bias is not None
        if isinstance(like, nn.Linear):
            self.first = nn.Linear(like.in_features, rank, bias=False)
            self.second = nn.Linear(rank, like.out_features, bias=has_bias)
        else:
            if like.groups != 1:
                raise ValueError("low-rank branches need an ungrouped conv")
            self.first = nn.Conv2d(
                like.in_channels,
                rank,
                like.kernel_size,
                stride=like.stride,
                padding=like.padding,
                dilation=like.dilation,
                bias=False,
                padding_mode=like.padding_mode,
            )
            self.second = nn.Conv2d(rank, like.out_channels, 1, bias=has_bias)
        self.rank = rank

    def forward(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))

    def equivalent_weight(self) -> Tensor:
        second = self.second.weight.flatten(1)  # (out, r)
        first = self.first.weight  # (r, in[, kh, kw])
        return (second @ first.flatten(1)).view(second.shape[0], *first.shape[1:])

    @property
    def bias(self) -> Tensor | None:
        return self.second.bias


# ------------------------------------------------------------------------------------- dwsep
class DepthwiseSeparable(Branch):
    """A depthwise k×k conv (the original's geometry, one k×k filter per input channel, no bias)
    then a 1×1 conv (in → out, with the original's bias). Output o reads input channel i through
    ``P[o, i]·D[i]``: a k×k kernel whose every (o, i) slice is a multiple of the channel's filter,
    so the blend's one-convolution form and the exact collapse hold."""

    kind = "dwsep"

    @staticmethod
    def cost(layer: Layer, size: int | None) -> int:
        spatial = layer.in_channels * math.prod(layer.kernel_size)
        return spatial + layer.out_channels * layer.in_channels + _bias_params(layer)

    @classmethod
    def create(
        cls, layer: Layer, size: int | None, mask: Tensor | None = None
    ) -> DepthwiseSeparable:
        return cls(layer)

    def __init__(self, like: nn.Conv2d):
        super().__init__()
        if not isinstance(like, nn.Conv2d) or like.groups != 1:
            raise ValueError("depthwise-separable branches need an ungrouped Conv2d")
        c = like.in_channels
        self.depthwise = nn.Conv2d(
            c,
            c,
            like.kernel_size,
            stride=like.stride,
            padding=like.padding,
            dilation=like.dilation,
            groups=c,
            bias=False,
            padding_mode=like.padding_mode,
        )
        self.pointwise = nn.Conv2d(c, like.out_channels, 1, bias=like.bias is not None)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))

    def equivalent_weight(self) -> Tensor:
        p = self.pointwise.weight  # (out, in, 1, 1)
        return p * self.depthwise.weight[:, 0][None]  # (out, in, kh, kw)

    @property
    def bias(self) -> Tensor | None:
        return self.pointwise.bias


# ------------------------------------------------------------------------------------ sparse
class Sparse(Branch):
    """A copy of the layer whose weight is multiplied by a fixed binary mask, through
    ``torch.nn.utils.prune`` (``weight_orig`` × ``weight_mask``). Its parameter count is the
    number of weights the mask keeps, plus the bias."""

    kind = "sparse"

    @staticmethod
    def cost(layer: Layer, size: int | None) -> int:
        return size + _bias_params(layer)

    @classmethod
    def create(cls, layer: Layer, size: int | None, mask: Tensor | None = None) -> Sparse:
        fresh = copy.deepcopy(layer)  # the layer's default init, under the fixed mask
        fresh.reset_parameters()
        return cls(fresh, mask)

    def __init__(self, like: Layer, mask: Tensor | None = None):
        super().__init__()
        self.layer = copy.deepcopy(like)
        prune.custom_from_mask(
            self.layer, "weight", torch.ones_like(like.weight) if mask is None else mask
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(x)

    def equivalent_weight(self) -> Tensor:
        return self.layer.weight_orig * self.layer.weight_mask

    @property
    def bias(self) -> Tensor | None:
        return self.layer.bias

    def num_params(self) -> int:
        return int(self.layer.weight_mask.count_nonzero()) + _bias_params(self.layer)


# ------------------------------------------------------------------------ costs and building
BRANCHES: dict[str, type[Branch]] = {
    "pointwise": PointwiseConv,
    "lowrank": LowRank,
    "dwsep": DepthwiseSeparable,
    "sparse": Sparse,
}


def _kind(kind: str) -> type[Branch]:
    try:
        return BRANCHES[kind]
    except KeyError:
        raise ValueError(f"unknown branch kind {kind!r}; known: {', '.join(BRANCHES)}") from None


def branch_params(layer: Layer, kind: str, size: int | None) -> int:
    """Student parameters of a `kind` branch for `layer` (size: rank, or weights kept)."""
    return _kind(kind).cost(layer, size)


def build_branch(layer: Layer, kind: str, size: int | None, mask: Tensor | None = None) -> Branch:
    """A branch for `layer` with the default init of its layers: the `random` init."""
    return _kind(kind).create(layer, size, mask)


@torch.no_grad()
def init_pretrained(branch: Branch, layer: Layer) -> None:
    """Initialise `branch` from the original weights: the 1×1 kernel is the k×k kernel summed
    over its taps; a low-rank pair is the truncated SVD; a depthwise-separable pair is, for each
    input channel, the best rank-one fit of its slice of the kernel (the closest dwsep kernel to
    the original in the Frobenius norm); a sparse copy is the masked original."""
    w = layer.weight.detach()
    if isinstance(branch, PointwiseConv):
        branch.conv.weight.copy_(w.sum(dim=(2, 3), keepdim=True))
    elif isinstance(branch, LowRank):
        u, s, vh = torch.linalg.svd(w.flatten(1).double(), full_matrices=False)
        r = branch.rank
        root = s[:r].sqrt()
        branch.second.weight.copy_((u[:, :r] * root).view_as(branch.second.weight))
        branch.first.weight.copy_((root[:, None] * vh[:r]).view_as(branch.first.weight))
    elif isinstance(branch, DepthwiseSeparable):
        per_channel = w.transpose(0, 1).flatten(2).double()  # (in, out, kh·kw)
        u, s, vh = torch.linalg.svd(per_channel, full_matrices=False)
        root = s[:, :1].sqrt()  # (in, 1)
        branch.pointwise.weight.copy_((u[:, :, 0] * root).T.reshape_as(branch.pointwise.weight))
        branch.depthwise.weight.copy_((vh[:, 0] * root).reshape_as(branch.depthwise.weight))
    elif isinstance(branch, Sparse):
        branch.layer.weight_orig.copy_(w)
    else:
        raise TypeError(f"no pretrained init for {type(branch).__name__}")
    if branch.bias is not None and layer.bias is not None:
        branch.bias.copy_(layer.bias)
