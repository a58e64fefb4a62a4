"""``dwsep``: a k×k ``Conv2d`` → a depthwise k×k conv (one filter per input channel, the
original's stride, padding and dilation) then a 1×1 conv: about the pointwise cost, with the
original's receptive field. Its equivalent kernel is ``W[o, i] = P[o, i]·D[i]``."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from alphaprune.branches.base import (
    Branch,
    Layer,
    bias_params,
    grouped_rows,
    has_spatial_kernel,
)


class DepthwiseSeparable(Branch):
    """A depthwise k×k conv (the original's geometry, one k×k filter per input channel, no bias)
    then a 1×1 conv (in → out, with the original's bias). Output o reads input channel i through
    ``P[o, i]·D[i]``: a k×k kernel whose every (o, i) slice is a multiple of the channel's filter,
    so the blend's one-convolution form and the exact collapse hold."""

    kind = "dwsep"
    allocation = "spatial"

    @staticmethod
    def eligible(layer: nn.Module) -> bool:  # the depthwise filter takes any padding mode
        return has_spatial_kernel(layer) and layer.groups == 1

    @staticmethod
    def cost(layer: Layer, size: int | None) -> int:
        spatial = layer.in_channels * math.prod(layer.kernel_size)
        return spatial + layer.out_channels * layer.in_channels + bias_params(layer)

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

    @torch.no_grad()
    def init_pretrained(self, layer: Layer) -> None:
        """For each input channel, the best rank-one fit of its slice of the kernel: the closest
        dwsep kernel to the original in the Frobenius norm."""
        per_channel = layer.weight.detach().transpose(0, 1).flatten(2).double()  # (in, out, k²)
        u, s, vh = torch.linalg.svd(per_channel, full_matrices=False)
        root = s[:, :1].sqrt()  # (in, 1)
        self.pointwise.weight.copy_((u[:, :, 0] * root).T.reshape_as(self.pointwise.weight))
        self.depthwise.weight.copy_((vh[:, 0] * root).reshape_as(self.depthwise.weight))
        self._copy_bias(layer)

    def lsq_prepare(self, layer: Layer) -> None:
        self.init_pretrained(layer)  # the 1×1 conv is fitted to these depthwise filters

    def lsq_inputs(self, layer: Layer, x: Tensor) -> Tensor:
        return grouped_rows(self.depthwise(x), 1)

    def lsq_assign(self, b: Tensor) -> None:
        self.pointwise.weight.copy_(b[0].T.reshape_as(self.pointwise.weight))
