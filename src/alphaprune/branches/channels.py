"""``channels``: a layer that *reads* channels being removed, with those input columns zeroed.

The channels of a group (`alphaprune.channels`) fade out at their readers: the branch is the
same layer with the removed inputs' columns zeroed, so its equivalent weight is ``W · keep`` and
the blend scales those columns by α. At α = 0 nothing reads the removed channels, and the
narrowing pass removes them from every coupled layer exactly. The producers are never faded:
BatchNorm renormalises their weights in training, and BN(0) ≠ 0.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphaprune.branches.base import Branch, Layer, bias_params, conv_padding, run_layer
from alphaprune.channelmap import ChannelMap


def in_features(layer: Layer | ChannelMap) -> int:
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


class Channels(Branch):
    """A copy of the layer whose weight is multiplied by a fixed 0/1 mask over its inputs
    (`keep`, one entry per input channel or feature)."""

    kind = "channels"
    allocation = "channels"

    @staticmethod
    def eligible(layer: nn.Module) -> bool:
        if isinstance(layer, nn.Linear | ChannelMap):
            return True
        return isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.padding_mode == "zeros"

    @staticmethod
    def cost(layer: Layer | ChannelMap, size: int | None) -> int:
        """`size` inputs kept (a `ChannelMap`'s gains are not parameters: none)."""
        if isinstance(layer, ChannelMap):
            return 0
        per_input = layer.weight[:, :1].numel()
        return per_input * size + bias_params(layer)

    @classmethod
    def create(cls, layer: Layer, size: int | None, mask: Tensor | None = None) -> Channels:
        """The layer's default init under `mask` (default: the first `size` inputs kept)."""
        fresh = copy.deepcopy(layer)
        fresh.reset_parameters()
        if mask is None:
            mask = torch.arange(in_features(layer)) < size
        return cls(fresh, mask)

    def __init__(self, like: Layer, keep: Tensor):
        super().__init__()
        if keep.shape != (in_features(like),):
            raise ValueError(f"keep: one entry per input ({in_features(like)}), got {keep.shape}")
        self.layer = copy.deepcopy(like)
        self.register_buffer("keep", keep.to(like.weight.dtype))

    def _mask(self) -> Tensor:
        shape = [1, -1] + [1] * (self.layer.weight.dim() - 2)
        return self.keep.view(shape)

    def forward(self, x: Tensor) -> Tensor:
        return run_layer(self.layer, x, self.equivalent_weight(), self.layer.bias)

    def equivalent_weight(self) -> Tensor:
        return self.layer.weight * self._mask()

    @property
    def bias(self) -> Tensor | None:
        return self.layer.bias

    def num_params(self) -> int:
        return self.cost(self.layer, int(self.keep.count_nonzero()))

    @torch.no_grad()
    def init_pretrained(self, layer: Layer) -> None:
        """The original weights: the kept inputs' columns as they are."""
        self.layer.weight.copy_(layer.weight)
        self._copy_bias(layer)

    # ---- least squares: the layer refitted on its kept inputs (ThiNet, He et al. 2017)
    @property
    def lsq_fits(self) -> bool:
        return not isinstance(self.layer, ChannelMap)  # a copy: nothing to fit

    def _kept(self) -> Tensor:
        return self.keep.bool().nonzero().flatten()

    def lsq_inputs(self, layer: Layer, x: Tensor) -> Tensor:
        x = x.index_select(1, self._kept().to(x.device))
        if isinstance(layer, nn.Linear):
            return x.reshape(-1, 1, x.shape[-1])
        before, after = conv_padding(layer)  # (H, W) each
        patches = F.unfold(
            F.pad(x, (before[1], after[1], before[0], after[0])),
            layer.kernel_size,
            dilation=layer.dilation,
            stride=layer.stride,
        )  # (N, kept·kh·kw, positions), positions row-major like the output's
        return patches.transpose(1, 2).reshape(-1, 1, patches.shape[1])

    def lsq_assign(self, b: Tensor) -> None:
        w = self.layer.weight
        kept = self._kept().to(w.device)
        shape = (w.shape[0], len(kept), *w.shape[2:])
        w.zero_()
        w.index_copy_(1, kept, b[0].T.reshape(shape).to(w.dtype))

    def deployable(self) -> nn.Module:
        """The layer with its dropped inputs' columns zero: what the narrowing pass narrows."""
        layer = copy.deepcopy(self.layer)
        with torch.no_grad():
            layer.weight.mul_(self._mask())
        return layer
