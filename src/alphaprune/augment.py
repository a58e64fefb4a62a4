"""Batched data augmentation as tensor ops on the batch's own device (airbench style).

Inputs are normalised float batches (B, C, H, W). Whole batches are transformed at once, with no
per-example Python loop, so augmentation costs a few kernel launches on the GPU instead of a
CPU-bound data loader. Every random draw comes from an explicit `torch.Generator` (on the same
device as the batch) so that a run is reproducible from its seed. The draws depend only on the
batch's shape, never on its values.

`part=(rows, total)` says that the batch is the rows `rows` of a batch of `total` examples (one
process's share, when a run spans several; `alphaprune.distributed`): the draws are made for
all `total` and the batch takes its rows' own, so every process's generator moves alike and an
example is augmented as it would be in the whole batch on one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augment", "crop_at", "crop_flip", "gaussian_noise", "resized_crop"]

Part = tuple[slice, int]  # (rows, total): the batch is these rows of a batch of `total`


def _drawn(x: Tensor, part: Part | None) -> tuple[int, slice]:
    """How many examples to draw for, and which of them are `x`'s."""
    return (x.shape[0], slice(None)) if part is None else (part[1], part[0])


def gaussian_noise(
    x: Tensor, fraction: float, std: float, generator: torch.Generator, part: Part | None = None
) -> Tensor:
    """Add N(0, std²) noise to every pixel of a random `fraction` of the examples.

    Each example is picked independently with probability `fraction`; the others are returned
    bit-for-bit unchanged. With `fraction` or `std` 0 the batch itself is returned (no draws).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    if not std >= 0.0:
        raise ValueError(f"std must be >= 0, got {std!r}")
    if fraction == 0.0 or std == 0.0:
        return x
    # rand is in [0, 1), so fraction 1 picks every example.
    b, rows = _drawn(x, part)
    picked = (torch.rand(b, generator=generator, device=x.device) < fraction)[rows]
    shape = (b, *x.shape[1:])
    noise = torch.randn(shape, generator=generator, device=x.device, dtype=x.dtype)[rows]
    return torch.where(picked.view(-1, *([1] * (x.dim() - 1))), x + std * noise, x)


def crop_at(x: Tensor, padding: int, top: Tensor, left: Tensor, flip: Tensor) -> Tensor:
    """The deterministic core of `crop_flip`: zero-pad by `padding`, crop, then maybe flip.

    Example b is the H×W window at (`top[b]`, `left[b]`) of the padded image (offsets in
    padded pixels, 0..2·padding; `padding` means no shift), mirrored left-right where `flip[b]`.
    Done as one gather over the flattened padded images.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))  # zeros: (B, C, H+2p, W+2p)
    padded_w = w + 2 * padding
    rows = top.view(b, 1) + torch.arange(h, device=x.device)  # (B, H), padded row indices
    cols = torch.arange(w, device=x.device).expand(b, w)
    # A flipped crop reads the window's columns right to left.
    cols = left.view(b, 1) + torch.where(flip.view(b, 1), w - 1 - cols, cols)  # (B, W)
    index = (rows.view(b, h, 1) * padded_w + cols.view(b, 1, w)).view(b, 1, h * w)
    out = padded.reshape(b, c, -1).gather(2, index.expand(b, c, h * w))
    return out.view(b, c, h, w)


def crop_flip(
    x: Tensor, padding: int, generator: torch.Generator, part: Part | None = None
) -> Tensor:
    """Random translation by up to `padding` pixels per axis (zero fill), then a random flip.

    Equivalent to torchvision's RandomCrop(H×W, padding) then RandomHorizontalFlip(0.5) applied
    to each example independently: offsets are uniform over the 2·padding + 1 positions in each
    axis, and each example is mirrored left-right with probability 0.5.
    """
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    b, rows = _drawn(x, part)
    shape, device = (b,), x.device
    top = torch.randint(0, 2 * padding + 1, shape, generator=generator, device=device)[rows]
    left = torch.randint(0, 2 * padding + 1, shape, generator=generator, device=device)[rows]
    flip = (torch.rand(shape, generator=generator, device=device) < 0.5)[rows]
    return crop_at(x, padding, top, left, flip)


def resized_crop(
    x: Tensor,
    scale: float,
    generator: torch.Generator,
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    part: Part | None = None,
) -> Tensor:
    """ImageNet's RandomResizedCrop as one batched op: each example's box covers a uniform
    U(`scale`, 1) fraction of its area at a log-uniform aspect ratio in `ratio`, lies uniformly
    inside the image, and is resampled to the batch's H×W (bilinear, by `roi_align` with one
    sample an output pixel: a box is never larger than the image, so this only ever enlarges).

    Unlike torchvision's, a box too wide or tall for the image is clamped to it instead of
    redrawn (up to 10 times) and then centre-cropped: the same boxes in all but the rare
    extreme draws. The crop is of the batch's images as they are (for streamed data, already
    fitted to `data.image_size`), not of the files' full frames.
    """
    from torchvision.ops import roi_align

    _, _, h, w = x.shape
    b, rows = _drawn(x, part)
    dev = x.device
    area = (scale + (1 - scale) * torch.rand(b, generator=generator, device=dev)) * (h * w)
    lo, hi = torch.log(torch.tensor(ratio, device=dev))
    aspect = torch.exp(lo + (hi - lo) * torch.rand(b, generator=generator, device=dev))
    cw = torch.sqrt(area * aspect).clamp(max=w)
    ch = torch.sqrt(area / aspect).clamp(max=h)
    x0 = torch.rand(b, generator=generator, device=dev) * (w - cw)
    y0 = torch.rand(b, generator=generator, device=dev) * (h - ch)
    x0, y0, cw, ch = x0[rows], y0[rows], cw[rows], ch[rows]
    index = torch.arange(x.shape[0], device=dev, dtype=x.dtype)
    boxes = torch.stack([index, x0, y0, x0 + cw, y0 + ch], dim=1).to(x.dtype)
    out = roi_align(x, boxes, output_size=(h, w), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    if x.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


# The dataclass fields `crop_flip`, `resized_crop` shadow the functions' names in the class body.
_crop_flip = crop_flip
_resized_crop = resized_crop


@dataclass(frozen=True)
class Augment:
    """An augmentation policy: an optional random resized crop, optional crop+flip (with
    `crop_padding` 0, a flip alone), then optional Gaussian noise.

    Noise is added after the crop so that it covers the zero border too: a noisy example
    never shows a noise-free strip that would give the shift away.
    """

    noise_fraction: float = 0.0
    noise_std: float = 0.0
    crop_flip: bool = False
    crop_padding: int = 4  # pixels of shift allowed in each direction
    resized_crop: bool = False  # ImageNet's RandomResizedCrop (see `resized_crop`)
    resized_crop_scale: float = 0.08  # the smallest share of the image's area a crop covers

    def __post_init__(self) -> None:
        if not 0.0 <= self.noise_fraction <= 1.0:
            raise ValueError(f"noise_fraction must be in [0, 1], got {self.noise_fraction!r}")
        if not self.noise_std >= 0.0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std!r}")
        if self.crop_padding < 0:
            raise ValueError(f"crop_padding must be >= 0, got {self.crop_padding!r}")
        if not 0.0 < self.resized_crop_scale <= 1.0:
            raise ValueError(
                f"resized_crop_scale must be in (0, 1], got {self.resized_crop_scale!r}"
            )

    @property
    def active(self) -> bool:
        """Whether calling this policy can change a batch at all."""
        noise = self.noise_fraction > 0.0 and self.noise_std > 0.0
        return self.resized_crop or self.crop_flip or noise

    def __call__(self, x: Tensor, generator: torch.Generator, part: Part | None = None) -> Tensor:
        """Augment batch `x` (B, C, H, W), drawing from `generator`; `part`: see the module."""
        if self.resized_crop:
            x = _resized_crop(x, self.resized_crop_scale, generator, part=part)
        if self.crop_flip:
            x = _crop_flip(x, self.crop_padding, generator, part)
        return gaussian_noise(x, self.noise_fraction, self.noise_std, generator, part)
