"""Tests for batched augmentation: noise statistics, exact crops, reproducibility, and a
statistical comparison of crop_flip with torchvision's per-example RandomCrop + flip."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from alphaprune.augment import Augment, crop_at, crop_flip, gaussian_noise, resized_crop


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _coordinate_image(h: int = 8, w: int = 8) -> torch.Tensor:
    """(2, H, W) image: channel 0 holds row + 1, channel 1 holds column + 1 (0 marks padding)."""
    rows = torch.arange(1, h + 1, dtype=torch.float32).view(h, 1).expand(h, w)
    cols = torch.arange(1, w + 1, dtype=torch.float32).view(1, w).expand(h, w)
    return torch.stack([rows, cols])


def _manual_crop(img: torch.Tensor, padding: int, top: int, left: int, flip: bool) -> torch.Tensor:
    """Reference for one (C, H, W) image: pad with zeros, slice the window, maybe mirror."""
    _, h, w = img.shape
    window = F.pad(img, (padding,) * 4)[:, top : top + h, left : left + w]
    return window.flip(-1) if flip else window


def _identify(outputs: torch.Tensor, img: torch.Tensor, padding: int) -> torch.Tensor:
    """For each output (N, C, H, W) of cropping `img`, the unique (top, left, flip) it equals.

    Fails if an output matches no candidate, i.e. is not an exact shifted (flipped) copy.
    """
    offsets = range(2 * padding + 1)
    params = list(itertools.product(offsets, offsets, (False, True)))
    candidates = torch.stack([_manual_crop(img, padding, *p) for p in params])
    equal = (outputs[:, None] == candidates[None]).flatten(2).all(2)  # (N, candidates)
    assert (equal.sum(1) == 1).all(), "every output is exactly one shifted/flipped copy"
    return torch.tensor(params)[equal.int().argmax(1)]  # (N, 3): top, left, flip


# ----------------------------------------------------------------------------- gaussian_noise
@pytest.mark.parametrize("fraction", [0.5, 0.2])
def test_noise_hits_the_requested_fraction_with_the_requested_std(fraction: float) -> None:
    std, g = 0.3, _gen(0)
    noised, diffs = [], []
    for _ in range(20):  # 20 batches × 1000 examples = 20k examples
        x = torch.randn(1000, 3, 4, 4, generator=g)
        diff = (gaussian_noise(x, fraction, std, g) - x).flatten(1)
        changed = diff != 0
        # An example gets noise on all of its pixels or on none: the rest are exactly unchanged.
        assert torch.equal(changed.any(1), changed.all(1))
        noised.append(changed.any(1))
        diffs.append(diff[changed.any(1)])
    assert torch.cat(noised).float().mean().item() == pytest.approx(fraction, abs=0.02)
    assert torch.cat(diffs).std().item() == pytest.approx(std, rel=0.02)
    assert torch.cat(diffs).mean().item() == pytest.approx(0.0, abs=0.01)


def test_noise_leaves_unpicked_examples_bit_identical() -> None:
    x = torch.randn(200, 3, 4, 4, generator=_gen(1))
    out = gaussian_noise(x, 0.5, 1.0, _gen(2))
    same = (out == x).flatten(1).all(1)
    assert 0 < same.sum() < 200
    assert torch.equal(out[same], x[same])  # exact, not approximately, equal


@pytest.mark.parametrize(("fraction", "std"), [(0.0, 1.0), (0.5, 0.0)])
def test_noise_off_returns_input(fraction: float, std: float) -> None:
    x = torch.randn(4, 3, 4, 4)
    assert torch.equal(gaussian_noise(x, fraction, std, _gen(0)), x)


def test_noise_fraction_one_hits_every_example() -> None:
    x = torch.randn(100, 1, 2, 2)
    assert ((gaussian_noise(x, 1.0, 0.1, _gen(0)) != x).flatten(1).all(1)).all()


@pytest.mark.parametrize(("fraction", "std"), [(-0.1, 1.0), (1.1, 1.0), (0.5, -1.0)])
def test_noise_rejects_bad_arguments(fraction: float, std: float) -> None:
    with pytest.raises(ValueError):
        gaussian_noise(torch.zeros(1, 1, 2, 2), fraction, std, _gen(0))


# ----------------------------------------------------------------------------- crop_flip
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_crop_flip_keeps_shape_and_dtype(dtype: torch.dtype) -> None:
    x = torch.randn(6, 3, 7, 5, dtype=dtype)
    out = crop_flip(x, 2, _gen(0))
    assert out.shape == x.shape
    assert out.dtype == dtype


def test_crop_at_on_hand_example() -> None:
    img = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]).view(1, 1, 3, 3)
    x = img.expand(3, 1, 3, 3)
    # Padding 1; window at padded (0, 0) shifts the image down-right by one pixel.
    # Window at (2, 1) shifts it up by one; flip mirrors the window.
    out = crop_at(
        x, 1, torch.tensor([0, 0, 2]), torch.tensor([0, 0, 1]), torch.tensor([False, True, False])
    )
    expected = torch.tensor(
        [
            [[0.0, 0.0, 0.0], [0.0, 1.0, 2.0], [0.0, 4.0, 5.0]],
            [[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [5.0, 4.0, 0.0]],
            [[4.0, 5.0, 6.0], [7.0, 8.0, 9.0], [0.0, 0.0, 0.0]],
        ]
    ).view(3, 1, 3, 3)
    assert torch.equal(out, expected)


def test_padding_zero_gives_identity_or_flip() -> None:
    x = torch.randn(64, 3, 5, 5, generator=_gen(3))
    out = crop_flip(x, 0, _gen(4))
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert (same | flipped).all()
    assert same.any() and flipped.any()


def test_each_crop_is_an_exact_shifted_copy_of_its_own_example() -> None:
    padding = 2
    x = torch.randn(64, 3, 8, 8, generator=_gen(5))  # distinct examples: no mix-ups go unseen
    out = crop_flip(x, padding, _gen(6))
    for b in range(x.shape[0]):
        _identify(out[b : b + 1], x[b], padding)
    # And one example spelled out: find its shift, then compare with a hand-made shift.
    top, left, flip = _identify(out[:1], x[0], padding)[0].tolist()
    h, w = x.shape[-2:]
    manual = torch.zeros(3, h, w)
    dy, dx = top - padding, left - padding  # the image moves by (−dy, −dx) pixels
    for i, j in itertools.product(range(h), range(w)):
        if 0 <= i + dy < h and 0 <= j + dx < w:
            manual[:, i, j] = x[0, :, i + dy, j + dx]
    assert torch.equal(out[0], manual.flip(-1) if flip else manual)


def test_same_seed_same_output_other_seed_other_output() -> None:
    x = torch.randn(32, 3, 8, 8, generator=_gen(7))
    policy = Augment(noise_fraction=0.5, noise_std=0.2, crop_flip=True, crop_padding=2)
    assert torch.equal(policy(x, _gen(8)), policy(x, _gen(8)))
    assert not torch.equal(policy(x, _gen(8)), policy(x, _gen(9)))


def test_crop_flip_rejects_negative_padding() -> None:
    with pytest.raises(ValueError, match="padding"):
        crop_flip(torch.zeros(1, 1, 4, 4), -1, _gen(0))


def test_crop_flip_statistics_match_torchvision_per_example() -> None:
    v2 = pytest.importorskip("torchvision.transforms.v2")
    padding, n, h, w = 2, 4000, 8, 8
    img = _coordinate_image(h, w)

    ours = crop_flip(img.expand(n, 2, h, w), padding, _gen(10))
    reference = v2.Compose([v2.RandomCrop((h, w), padding=padding), v2.RandomHorizontalFlip(0.5)])
    torch.manual_seed(11)
    theirs = torch.stack([reference(img) for _ in range(n)])

    # Both produce only exact shifted/flipped copies, from the same set of candidates ...
    ours_params, theirs_params = _identify(ours, img, padding), _identify(theirs, img, padding)
    # ... with a flip half of the time and offsets uniform over the 2·padding + 1 positions.
    for params in (ours_params, theirs_params):
        assert params[:, 2].float().mean().item() == pytest.approx(0.5, abs=0.03)
        for axis in (0, 1):
            freq = torch.bincount(params[:, axis], minlength=2 * padding + 1).float() / n
            assert torch.allclose(freq, torch.full_like(freq, 1 / (2 * padding + 1)), atol=0.03)
    # Joint distribution of (top, left, flip) agrees cell by cell (50 cells, ~80 hits each).
    cells = (2 * padding + 1) ** 2 * 2
    weights = torch.tensor([2 * (2 * padding + 1), 2, 1])
    ours_hist = torch.bincount(ours_params @ weights, minlength=cells).float() / n
    theirs_hist = torch.bincount(theirs_params @ weights, minlength=cells).float() / n
    assert (ours_hist - theirs_hist).abs().max().item() < 0.015


# ----------------------------------------------------------------------------- Augment
def test_augment_defaults_are_inactive_and_identity() -> None:
    policy = Augment()
    assert not policy.active
    x = torch.randn(4, 3, 8, 8)
    assert torch.equal(policy(x, _gen(0)), x)


@pytest.mark.parametrize(
    ("policy", "active"),
    [
        (Augment(noise_fraction=0.5), False),
        (Augment(noise_std=0.5), False),
        (Augment(noise_fraction=0.5, noise_std=0.5), True),
        (Augment(crop_flip=True), True),
        (Augment(resized_crop=True), True),
    ],
)
def test_augment_active(policy: Augment, active: bool) -> None:
    assert policy.active is active


def test_augment_is_crop_flip_then_noise() -> None:
    x = torch.randn(32, 3, 8, 8, generator=_gen(12))
    policy = Augment(noise_fraction=0.5, noise_std=0.2, crop_flip=True, crop_padding=3)
    g = _gen(13)
    expected = gaussian_noise(crop_flip(x, 3, g), 0.5, 0.2, g)
    assert torch.equal(policy(x, _gen(13)), expected)


def test_augment_is_frozen_and_validated() -> None:
    with pytest.raises(AttributeError):
        Augment().noise_std = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="noise_fraction"):
        Augment(noise_fraction=2.0)
    with pytest.raises(ValueError, match="crop_padding"):
        Augment(crop_padding=-1)
    with pytest.raises(ValueError, match="resized_crop_scale"):
        Augment(resized_crop=True, resized_crop_scale=0.0)


# -------------------------------------------------------------------------- resized crop
def test_resized_crop_of_the_whole_image_is_the_image() -> None:
    x = torch.randn(4, 3, 9, 9, generator=_gen(20))
    assert torch.allclose(resized_crop(x, 1.0, _gen(1), ratio=(1.0, 1.0)), x, atol=1e-6)


def test_resized_crop_enlarges_a_part_of_each_own_image() -> None:
    # each example a constant of its own: a crop shows only its own value, no border
    x = torch.arange(16.0).view(16, 1, 1, 1).expand(16, 3, 12, 12).contiguous()
    out = resized_crop(x, 0.08, _gen(2))
    assert out.shape == x.shape and torch.allclose(out, x)
    # a ramp: a crop keeps the ramp's direction and stays within its range, and a small crop
    # spans less of it than the whole image does
    ramp = torch.linspace(0, 1, 32).expand(64, 1, 32, 32).contiguous()
    out = resized_crop(ramp, 0.08, _gen(3))
    assert out.min() >= 0 and out.max() <= 1
    assert (out[..., 1:] - out[..., :-1] >= -1e-6).all()  # still increasing left to right
    spans = out[..., -1].mean((1, 2)) - out[..., 0].mean((1, 2))
    assert (spans <= 1 + 1e-6).all() and spans.min() < 0.5  # some cover little of the width


def test_resized_crop_areas_follow_the_scale() -> None:
    x = torch.linspace(0, 1, 64).expand(2000, 1, 64, 64).contiguous()
    out = resized_crop(x, 0.5, _gen(4), ratio=(1.0, 1.0))  # square boxes: width = sqrt(area)
    width = out[..., -1].mean((1, 2)) - out[..., 0].mean((1, 2))  # ≈ the box's share of it
    side = torch.sqrt(0.5 + 0.5 * torch.rand(20000, generator=_gen(5)))
    assert width.mean().item() == pytest.approx(side.mean().item(), abs=0.01)
    assert width.min() >= 0.5**0.5 - 0.02  # never below sqrt(0.5) of the side


def test_resized_crop_is_seeded_and_keeps_the_layout() -> None:
    x = torch.randn(8, 3, 10, 10, generator=_gen(6)).contiguous(memory_format=torch.channels_last)
    a, b, c = (resized_crop(x, 0.2, _gen(s)) for s in (7, 7, 8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.is_contiguous(memory_format=torch.channels_last)


def test_augment_is_resized_crop_then_flip() -> None:
    x = torch.randn(16, 3, 8, 8, generator=_gen(9))
    policy = Augment(resized_crop=True, resized_crop_scale=0.3, crop_flip=True, crop_padding=0)
    g = _gen(10)
    expected = crop_flip(resized_crop(x, 0.3, g), 0, g)
    assert torch.equal(policy(x, _gen(10)), expected)
