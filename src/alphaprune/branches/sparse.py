"""``sparse``: a copy of the layer with a fixed binary mask (``torch.nn.utils.prune``'s
reparametrisation)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from alphaprune.branches.base import Branch, Layer, bias_params

_BITS = 1 << torch.arange(8, dtype=torch.uint8)


class Sparse(Branch):
    """A copy of the layer whose weight is multiplied by a fixed binary mask, through
    ``torch.nn.utils.prune`` (``weight_orig`` × ``weight_mask``). Its parameter count is the
    number of weights the mask keeps, plus the bias."""

    kind = "sparse"
    allocation = "mask"

    @staticmethod
    def eligible(layer: nn.Module) -> bool:
        return isinstance(layer, nn.Conv2d | nn.Linear)

    @staticmethod
    def cost(layer: Layer, size: int | None) -> int:
        return size + bias_params(layer)

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
        return int(self.layer.weight_mask.count_nonzero()) + bias_params(self.layer)

    @torch.no_grad()
    def init_pretrained(self, layer: Layer) -> None:
        """The masked original: torch.nn.utils.prune's magnitude pruning."""
        self.layer.weight_orig.copy_(layer.weight.detach())
        self._copy_bias(layer)

    # Stored as the kept values plus a bit-packed mask: the file is physically smaller.
    def pack(self, state: dict[str, Tensor], prefix: str) -> None:
        key = f"{prefix}.layer.weight"
        mask = state.pop(f"{key}_mask").flatten().bool()
        values = state.pop(f"{key}_orig").flatten()[mask]
        padded = torch.cat([mask, mask.new_zeros(-mask.numel() % 8)]).view(-1, 8)
        state[f"{key}_bits"] = (padded.to(torch.uint8) * _BITS).sum(1, dtype=torch.uint8)
        state[f"{key}_values"] = values

    def unpack(self, state: dict[str, Tensor], prefix: str) -> None:
        key, shape = f"{prefix}.layer.weight", self.layer.weight_mask.shape
        bits = state.pop(f"{key}_bits")
        values = state.pop(f"{key}_values")
        mask = ((bits[:, None] & _BITS.to(bits.device)) > 0).flatten()[: shape.numel()]
        weight = values.new_zeros(shape.numel())
        weight[mask] = values
        state[f"{key}_orig"] = weight.view(shape)
        state[f"{key}_mask"] = mask.to(values.dtype).view(shape)

    def loaded(self) -> None:  # the prune hook sets `.weight` only at the next forward
        self.layer.weight = self.layer.weight_orig * self.layer.weight_mask

    def deployable(self) -> nn.Module:
        """A dense copy of the layer, its pruned weights zeros: runtimes run it densely anyway,
        and a plain weight lets an exporter fold the following BatchNorm into it."""
        layer = copy.deepcopy(self.layer)
        prune.remove(layer, "weight")
        return layer
