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

from alphaprune.registry import Registry

Layer = nn.Conv2d | nn.Linear


def _bias_params(layer: Layer) -> int:
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
    allocation: str  # how `budget.allocate` sizes this kind: spatial | rank | mask
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
    allocation = "spatial"

    @staticmethod
    def eligible(layer: nn.Module) -> bool:
        return has_spatial_kernel(layer) and layer.padding_mode == "zeros"

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
    allocation = "rank"

    @staticmethod
    def eligible(layer: nn.Module) -> bool:
        ungrouped = isinstance(layer, nn.Linear) or layer.groups == 1
        return ungrouped and lowrank_break_even(layer) >= 1

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
        before, after = _padding(layer)
        x = F.pad(x, (before[1], after[1], before[0], after[0]))
        cols = F.unfold(x, layer.kernel_size, dilation=layer.dilation, stride=layer.stride)
        return cols.transpose(1, 2).reshape(-1, 1, cols.shape[1])  # (N·L, 1, C·kh·kw)

    def lsq_assign(self, b: Tensor) -> None:
        """b (1, D, out) has rank <= r already (reduced-rank regression): its exact rank-r
        factorisation."""
        first, second = balanced_factors(b[0], self.rank)
        self.first.weight.copy_(first.T.reshape_as(self.first.weight))
        self.second.weight.copy_(second.T.reshape_as(self.second.weight))


# ------------------------------------------------------------------------------------- dwsep
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


# ------------------------------------------------------------------------------------ sparse
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


_BITS = 1 << torch.arange(8, dtype=torch.uint8)


# ------------------------------------------------------------------------ costs and building
BRANCHES: Registry[type[Branch]] = Registry("branch kind")
for _cls in (PointwiseConv, LowRank, DepthwiseSeparable, Sparse):
    BRANCHES.register(_cls.kind)(_cls)


def branch_params(layer: Layer, kind: str, size: int | None) -> int:
    """Student parameters of a `kind` branch for `layer` (size: rank, or weights kept)."""
    return BRANCHES.lookup(kind).cost(layer, size)


def build_branch(layer: Layer, kind: str, size: int | None, mask: Tensor | None = None) -> Branch:
    """A branch for `layer` with the default init of its layers: the `random` init."""
    return BRANCHES.lookup(kind).create(layer, size, mask)
