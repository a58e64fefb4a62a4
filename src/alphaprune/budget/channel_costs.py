"""What a model costs once channels of its groups (`alphaprune.channels`) are gone, counted from
the kept widths without narrowing it: the channel allocator's arithmetic (`budget.channels`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from alphaprune.channelmap import ChannelMap
from alphaprune.channels import ChannelGroup


class Counter:
    """What a model costs once `removed` channels of its groups are gone, without narrowing it:
    conv, linear and BatchNorm sizes from their kept widths; a layer's MACs are its weights
    times its `positions` (as `alphaprune.costs.layer_positions` counts them; BatchNorm has
    none, folded into its conv where deployed)."""

    def __init__(
        self,
        model: nn.Module,
        groups: Sequence[ChannelGroup],
        positions: dict[str, int] | None = None,
    ):
        self.modules = dict(model.named_modules())
        self.positions = positions or {}
        self.dims: dict[str, dict[str, tuple[str, int]]] = {}  # module -> out/in -> group, per
        for g in groups:
            for m in g.members:
                side = "in" if m.fn.endswith("in_channels") else "out"
                self.dims.setdefault(m.module, {})[side] = (g.root, len(m.columns[0]))

    def saving(self, removed: dict[str, int], target: str = "params") -> int:
        """The parameters (`target` "params") or MACs ("macs") that go when `removed[root]`
        channels of each group are gone."""
        count = self.module_params if target == "params" else self.module_macs
        return sum(count(n, {}) - count(n, removed) for n in self.dims)

    def module_params(self, name: str, removed: dict[str, int]) -> int:
        """The parameters of module `name` once `removed[root]` channels of each group are
        gone (a module no group touches keeps its own)."""
        m = self.modules[name]
        weights, bias = self._shape(name, removed)
        if isinstance(m, _BatchNorm):
            return 2 * bias if m.affine else 0
        return weights + (0 if m.bias is None else bias)

    def module_macs(self, name: str, removed: dict[str, int]) -> int:
        """The MACs per example of module `name` once `removed[root]` channels are gone."""
        if isinstance(self.modules[name], _BatchNorm | ChannelMap):
            return 0
        return self._shape(name, removed)[0] * self.positions[name]

    def _shape(self, name: str, removed: dict[str, int]) -> tuple[int, int]:
        """(weights, output channels) of module `name` at its kept widths."""
        m, dims = self.modules[name], self.dims.get(name, {})

        def kept(side: str, full: int) -> int:
            if side not in dims:
                return full
            root, per = dims[side]
            return full - per * removed.get(root, 0)

        if isinstance(m, _BatchNorm):
            return 0, kept("out", m.num_features)
        if isinstance(m, ChannelMap):  # no weights: a copy
            return 0, kept("out", m.out_channels)
        if isinstance(m, nn.Linear):
            out = kept("out", m.out_features)
            return out * kept("in", m.in_features), out
        out = kept("out", m.out_channels)
        taps = math.prod(m.kernel_size)
        if m.groups > 1:  # depthwise: one filter per channel, in and out the same group
            return out * taps, out
        return out * kept("in", m.in_channels) * taps, out
