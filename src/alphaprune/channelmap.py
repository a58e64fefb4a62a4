"""`ChannelMap`: a parameter-free shortcut that copies each input channel to one output channel
(or drops it), zero elsewhere, after an optional spatial subsampling.

The CIFAR ResNets' option-A shortcut (He et al. 2016) is one: it subsamples the stream and
zero-pads its channels evenly, so the channels of one stage's residual stream land in the middle
of the next stage's. Written as a pad, that coupling is invisible to Torch-Pruning's graph (it
reads a pad as an element-wise op and merges every stream into one wrongly indexed group, which
`alphaprune.channels` then has to exclude), and the stem, each stage's stream and the classifier
keep the teacher's width. Written as an explicit map, with a prune function for each side
(`alphaprune.channels.MAP_PRUNER`), the stream of each stage is a group like any other: removing
an input channel removes its copy, removing an output channel drops its source.

The map has no parameters: a per-input gain (`weight`, 1 for every channel of a model) is what a
`channels` student fades (`branches.channels`), as it fades a conv's input columns. The map and
the gain are not stored in a state dict: they follow from the architecture and, for a narrowed
student, from the narrowing record (`channels.replay`), so model files from before the map load
unchanged.

Forward is a subsample, a scale, a copy with one zero channel appended and one gather, in the
input's dtype (its output is NCHW even where the input is channels_last). For
Torch-Pruning's tracer, which follows autograd's graph op by op and must see the map as a single
op between its input and output, `as_conv()` makes it the same map as one 1×1 strided conv.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_AS_CONV: ContextVar[bool] = ContextVar("channel_map_as_conv", default=False)


@contextlib.contextmanager
def as_conv() -> Iterator[None]:
    """Within: every `ChannelMap` runs as one 1×1 conv (the same outputs, for tracing)."""
    token = _AS_CONV.set(True)
    try:
        yield
    finally:
        _AS_CONV.reset(token)


def padded(in_channels: int, out_channels: int) -> Tensor:
    """The option-A map: the inputs in the middle, the extra outputs split evenly before and
    after (as in the reference implementation's pad)."""
    if out_channels < in_channels:
        raise ValueError(f"a zero-padding map cannot narrow ({in_channels} -> {out_channels})")
    before = (out_channels - in_channels) // 2
    source = torch.full((out_channels,), -1, dtype=torch.long)
    source[before : before + in_channels] = torch.arange(in_channels)
    return source


class ChannelMap(nn.Module):
    """``out[:, o] = weight[s] · x[:, s, ::stride, ::stride]`` where ``s = source[o] ≥ 0``, and 0
    where ``source[o] = -1``. Each input feeds at most one output. Kept as `index`: `source`
    with -1 written as in_channels (the zero channel forward gathers from)."""

    bias = None  # for the code that treats it as a layer reading channels (see the module doc)

    def __init__(self, in_channels: int, source: Tensor, stride: int = 1) -> None:
        super().__init__()
        source = torch.as_tensor(source, dtype=torch.long)
        used = source[source >= 0]
        if used.numel() and (used.max() >= in_channels or used.unique().numel() != used.numel()):
            raise ValueError("source: each input channel at most once, each in [0, in_channels)")
        self.stride = stride
        self.register_buffer("weight", torch.ones(1, in_channels), persistent=False)
        # per output, the channel it gathers: its source, or in_channels (the zero channel
        # forward appends)
        index = torch.where(source >= 0, source, in_channels)
        self.register_buffer("index", index, persistent=False)

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1]

    @property
    def out_channels(self) -> int:
        return self.index.numel()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.fill_(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with(x, self.weight)

    def forward_with(self, x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
        """The map with the gains `weight` (1, in_channels) in place of its own."""
        weight = weight.to(x.dtype)  # a bf16 stream under autocast stays bf16
        if _AS_CONV.get():
            return F.conv2d(x, self.matrix(weight)[:, :, None, None], stride=self.stride)
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride]
        x = x * weight.reshape(1, -1, 1, 1)
        # + the zero channel; the gather's output is NCHW whatever the input's layout (the
        # residual add after it takes the block's layout: one mixed-layout add per map)
        return F.pad(x, (0, 0, 0, 0, 0, 1)).index_select(1, self.index)

    def matrix(self, weight: Tensor | None = None) -> Tensor:
        """The map as an (out_channels, in_channels) matrix (each row one gain or none)."""
        weight = self.weight if weight is None else weight
        rows = torch.zeros(self.out_channels, self.in_channels + 1, dtype=weight.dtype)
        rows = rows.to(weight.device)
        rows[torch.arange(self.out_channels, device=weight.device), self.index] = 1
        return rows[:, : self.in_channels] * weight

    # ---- Torch-Pruning's prune functions (`alphaprune.channels.MAP_PRUNER`)
    def drop_outputs(self, idxs) -> None:
        self.index = self.index[_kept(self.out_channels, idxs, self.index.device)]

    def drop_inputs(self, idxs) -> None:
        keep = _kept(self.in_channels, idxs, self.index.device)
        # old input -> its new index; a dropped one, and the zero channel, -> the new zero
        new = torch.full((self.in_channels + 1,), len(keep), dtype=torch.long, device=keep.device)
        new[keep] = torch.arange(len(keep), device=keep.device)
        self.index = new[self.index]
        self.weight = self.weight[:, keep]

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


def _kept(n: int, removed, device) -> Tensor:
    gone = set(map(int, removed))
    return torch.tensor([i for i in range(n) if i not in gone], dtype=torch.long, device=device)
