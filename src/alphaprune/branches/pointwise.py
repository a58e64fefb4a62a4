"""``pointwise``: a k×k ``Conv2d`` → a 1×1 ``Conv2d`` reading the original's centre tap, aligned
so its output has the original's shape for any stride, padding, dilation and groups."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphaprune.branches.base import (
    Branch,
    Layer,
    bias_params,
    conv_padding,
    grouped_rows,
    has_spatial_kernel,
)


class PointwiseConv(Branch):
    """A 1×1 conv standing in for a k×k one: output[i] = W·input[i·s − p + d·c] where c is the
    centre tap ((k−1)//2), reading zeros outside the input, exactly as the k×k conv's centre tap
    does. Input is shifted (padded or cropped with one ``F.pad``) only when that is needed."""

    kind = "pointwise"
    allocation = "spatial"

    @staticmethod
    def eligible(layer: nn.Module) -> bool:
        return has_spatial_kernel(layer) and layer.padding_mode == "zeros"

    @staticmethod
    def cost(layer: Layer, size: int | None) -> int:
        return layer.out_channels * layer.in_channels // layer.groups + bias_params(layer)

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
        self.left, self.right = conv_padding(like)
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

    @torch.no_grad()
    def init_pretrained(self, layer: Layer) -> None:
        """The k×k kernel summed over its taps."""
        self.conv.weight.copy_(layer.weight.detach().sum(dim=(2, 3), keepdim=True))
        self._copy_bias(layer)

    def lsq_inputs(self, layer: Layer, x: Tensor) -> Tensor:
        return grouped_rows(self.gather(x), layer.groups)  # the centre-tap inputs, per group

    def lsq_groups(self, layer: Layer) -> int:
        return layer.groups

    def lsq_assign(self, b: Tensor) -> None:
        self.conv.weight.copy_(b.transpose(1, 2).reshape_as(self.conv.weight))
