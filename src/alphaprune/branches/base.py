"""What every branch kind shares: the `Branch` interface (its equivalent kernel, its inits, its
stored form), the layers a branch can stand for, and the helpers several kinds use."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Layer = nn.Conv2d | nn.Linear


def run_layer(layer: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """`layer` on `x` with `weight` and `bias` in place of its own: a linear, a conv, or a
    module that says how (`forward_with`, as `channelmap.ChannelMap` does)."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, weight, bias)
    if isinstance(layer, nn.Conv2d):
        return layer._conv_forward(x, weight, bias)
    return layer.forward_with(x, weight, bias)


def bias_params(layer: Layer) -> int:
    return 0 if layer.bias is None else layer.bias.numel()


def count_params(module: nn.Module, *, dense: bool = False) -> int:
    """The parameters of `module` (a model or a layer). A branch counts what its kind says
    (`Branch.num_params`: a sparse one, the weights its mask keeps) unless `dense`."""
    total = sum(p.numel() for p in module.parameters())
    if not dense:
        for m in module.modules():
            if isinstance(m, Branch):
                total += m.num_params() - sum(p.numel() for p in m.parameters())
    return total


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
    allocation: str  # how `budget.allocator.allocate` sizes this kind: spatial | rank | mask
    lsq_rank: int | None = None  # the rank a least-squares fit is held to (None: full)

    @staticmethod
    def eligible(layer: nn.Module) -> bool:
        """Whether `layer` can get a branch of this kind."""
        raise NotImplementedError

    def equivalent_weight(self) -> Tensor:
        raise NotImplementedError

    @property
    def bias(self) -> Tensor | None:
        raise NotImplementedError

    def num_params(self) -> int:
        """The student's parameters in this branch (a sparse one counts the weights it keeps)."""
        return sum(p.numel() for p in self.parameters())

    # ---- initialisation from the original layer
    @torch.no_grad()
    def init_pretrained(self, layer: Layer) -> None:
        """Initialise from the original weights (`prune.init: pretrained`)."""
        raise TypeError(f"no pretrained init for {type(self).__name__}")

    def _copy_bias(self, layer: Layer) -> None:
        if self.bias is not None and layer.bias is not None:
            self.bias.copy_(layer.bias)

    # ---- least squares (`lsq.fit`): the branch's output as a linear regression
    @property
    def lsq_fits(self) -> bool:
        """Whether a least-squares init fits it (else `init: lsq` gives it the pretrained one)."""
        return True

    def lsq_prepare(self, layer: Layer) -> None:
        """Set what the regression does not fit (before the calibration pass)."""

    def lsq_inputs(self, layer: Layer, x: Tensor) -> Tensor:
        """Regressors for `layer`'s input `x`: (rows, groups, inputs per group), one row per
        output position, in the order of `lsq.grouped_rows` of the layer's output."""
        raise TypeError(f"no least-squares init for {type(self).__name__}")

    def lsq_groups(self, layer: Layer) -> int:
        """Independent regressions, one per group of output channels."""
        return 1

    def lsq_assign(self, b: Tensor) -> None:
        """Set the weights from the fitted coefficients `b` (groups, inputs, outputs)."""
        raise TypeError(f"no least-squares init for {type(self).__name__}")

    # ---- model files (`modelfile`): the state dict entries of this branch, under `prefix`
    def pack(self, state: dict[str, Tensor], prefix: str) -> None:
        """Rewrite this branch's entries of `state` in their stored form (in place)."""

    def unpack(self, state: dict[str, Tensor], prefix: str) -> None:
        """Undo `pack` (in place), before the state dict is loaded."""

    def loaded(self) -> None:
        """Recompute what derives from the parameters: called once the state dict is loaded
        (and, under no_grad, before the module is copied)."""

    def deployable(self) -> nn.Module:
        """The module a deployed student runs in this branch's place (e.g. in ONNX)."""
        return self


def grouped_rows(t: Tensor, groups: int) -> Tensor:
    """(N, C, H, W) -> (N·H·W, G, C/G): one row per position, channels split by group."""
    n, c, h, w = t.shape
    per_group = c // groups
    return t.reshape(n, groups, per_group, h * w).permute(0, 3, 1, 2).reshape(-1, groups, per_group)


def balanced_factors(matrix: Tensor, rank: int) -> tuple[Tensor, Tensor]:
    """(L, R) with L @ R the best rank-`rank` approximation of `matrix`, √S on both factors:
    balanced factors keep the gradient of each from scaling with the other's norm
    (unbalanced ones diverge)."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def conv_padding(conv: nn.Conv2d) -> tuple[tuple[int, int], tuple[int, int]]:
    """(before, after) zeros the conv adds, per spatial dimension (H, W)."""
    if isinstance(conv.padding, str):
        # torch keeps 'same'/'valid' as [W_before, W_after, H_before, H_after].
        r = conv._reversed_padding_repeated_twice
        return (r[2], r[0]), (r[3], r[1])
    return tuple(conv.padding), tuple(conv.padding)
