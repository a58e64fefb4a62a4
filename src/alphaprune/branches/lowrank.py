"""``lowrank``: ``Conv2d(k×k, in → r)`` then ``Conv2d(1×1, r → out)``; a ``Linear`` → a rank-r
pair."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphaprune.branches.base import Branch, Layer, balanced_factors, bias_params, conv_padding


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
    allocation = "rank"

    @staticmethod
    def eligible(layer: nn.Module) -> bool:
        ungrouped = isinstance(layer, nn.Linear) or layer.groups == 1
        return ungrouped and lowrank_break_even(layer) >= 1

    @staticmethod
    def cost(layer: Layer, size: int | None) -> int:
        return size * (_fan_in(layer) + _out(layer)) + bias_params(layer)

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
        self.rank = self.lsq_rank = rank

    def forward(self, x: Tensor) -> Tensor:
        return self.second(self.first(x))

    def equivalent_weight(self) -> Tensor:
        second = self.second.weight.flatten(1)  # (out, r)
        first = self.first.weight  # (r, in[, kh, kw])
        return (second @ first.flatten(1)).view(second.shape[0], *first.shape[1:])

    @property
    def bias(self) -> Tensor | None:
        return self.second.bias

    @torch.no_grad()
    def init_pretrained(self, layer: Layer) -> None:
        """The truncated SVD of the kernel, as balanced factors."""
        second, first = balanced_factors(layer.weight.detach().flatten(1).double(), self.rank)
        self.second.weight.copy_(second.view_as(self.second.weight))
        self.first.weight.copy_(first.view_as(self.first.weight))
        self._copy_bias(layer)

    def lsq_inputs(self, layer: Layer, x: Tensor) -> Tensor:
        if isinstance(layer, nn.Linear):
            return x.reshape(-1, 1, x.shape[-1])
        before, after = conv_padding(layer)
        x = F.pad(x, (before[1], after[1], before[0], after[0]))
        cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)
        return cols.transpose(1, 2).reshape(-1, 1, cols.shape[1])  # (N·L, 1, C·kh·kw)

    def lsq_assign(self, b: Tensor) -> None:
        """b (1, D, out) has rank <= r already (reduced-rank regression): its exact rank-r
        factorisation."""
        first, second = balanced_factors(b[0], self.rank)
        self.first.weight.copy_(first.T.reshape_as(self.first.weight))
        self.second.weight.copy_(second.T.reshape_as(self.second.weight))
