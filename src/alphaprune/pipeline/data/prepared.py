"""The prepared data every stage reads (`Prepared`): uint8 tensors (N, C, H, W) with int64
labels, split train/val/test (`split`: stratified, with a fixed seed), written to one ``.pt``
file plus a small JSON card (sizes, classes, per-channel mean/std, content hash: `card`), and
read back (`load_data`). Training reads only that file: nothing is decoded again, and the whole
set can live on the GPU. An image folder too large for that is prepared streamed instead: the
file then holds an index of the image files, which training reads batch by batch.

A leaf: the sources that `prepare` reads (`sources`) and image folders (`imagefolder`) import it,
never the other way round.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from alphaprune import streamed
from alphaprune.errors import FileFormatError, UserError
from alphaprune.files import write_json
from alphaprune.pipeline.params.schema import DataConfig
from alphaprune.torchfiles import safe_load, torch_save

FORMAT = "alphaprune-data"
FORMAT_VERSION = 3  # 2: the file names its format (1 did not); 3: it may be an index (streamed)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
log = logging.getLogger(__name__)


class DataError(UserError, ValueError):
    """A data file or source is missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class Source:
    """What a source yields: uint8 images (N, C, H, W), int64 labels, class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None  # None: carve the test split from the training data
    y_test: np.ndarray | None
    classes: list[str]


def resize(images: np.ndarray, size: int) -> np.ndarray:
    """`alphaprune.streamed.fit` for numpy images (a resized copy: `images` is not changed)."""
    if images.shape[-2:] == (size, size):
        return images
    return streamed.fit(torch.from_numpy(np.array(images)), size).numpy()


@dataclass(frozen=True)
class Prepared:
    """A prepared dataset and its card: per split, the uint8 images and labels (resident form),
    or the labels and where each image's file is (streamed form: `files`)."""

    # resident: x_<split>, y_<split>; streamed: y_, names_ (NUL-separated, as bytes), sizes_,
    # mtimes_ and, for an archive, offsets_<split>
    tensors: dict[str, Tensor]
    card: dict

    @property
    def streamed(self) -> bool:
        return self.card.get("storage") == "streamed"

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        return self.tensors[f"x_{name}"], self.tensors[f"y_{name}"]

    def labels(self, name: str) -> Tensor:
        return self.tensors[f"y_{name}"]

    def files(self, name: str) -> streamed.Files:
        """Where the streamed form's images of split `name` are."""
        t = self.tensors
        joined = bytes(t[f"names_{name}"].numpy())
        names = np.array(joined.split(b"\0") if joined else [], dtype="S")
        return streamed.Files(
            self.card["root"], names, t[f"sizes_{name}"], t.get(f"offsets_{name}")
        )

    @property
    def mean(self) -> list[float]:
        return self.card["mean"]

    @property
    def std(self) -> list[float]:
        return self.card["std"]

    @property
    def num_classes(self) -> int:
        return len(self.card["classes"])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.card["shape"])


def _stratified_cap(x, y, n: int, seed: int):
    """The training split capped at `n` examples (`data.subset`), in the classes' proportions."""
    from sklearn.model_selection import train_test_split

    if n >= len(y):
        return x, y
    classes = len(np.unique(y))
    if n < classes:
        raise DataError(
            f"data.subset {n} is fewer than the {classes} classes: a stratified subset keeps at "
            f"least one training image of each; set data.subset to at least {classes}"
        )
    if len(y) - n < classes:  # fewer dropped than classes: nothing to stratify; a seeded draw
        keep = np.sort(np.random.default_rng(seed).permutation(len(y))[:n])
        return x[keep], y[keep]
    x, _, y, _ = train_test_split(x, y, train_size=n, stratify=y, random_state=seed)
    return x, y


def _carve(x, y, fraction: float, key: str, held: str, seed: int):
    """`train_test_split(stratify=y)` holding out `fraction` of the examples as the `held`
    split, refused with a sentence naming `key` where no stratified split exists (scikit-learn
    would end in a traceback): every class needs an example on each side, so each needs two,
    and each side as many examples as there are classes."""
    from sklearn.model_selection import train_test_split  # slow to import; only needed here

    n = len(y)
    labels, counts = np.unique(y, return_counts=True)
    k = len(labels)
    out = math.ceil(fraction * n)  # how scikit-learn rounds a fractional test_size
    if counts.min() < 2:
        raise DataError(
            f"{key} {fraction}: class {labels[counts.argmin()]} has {counts.min()} image left to "
            f"split, and a stratified split needs at least 2 of each class (one for {held}, one "
            "for training): add images of that class"
        )
    if out < k or n - out < k:
        low, high = math.ceil(1000 * k / n) / 1000, math.floor(1000 * (n - k) / n) / 1000
        fix = f"between {low} and {high}" if low < high else f"to {k / n:.6g}"
        side = f"holds out {out}" if out < k else f"leaves {n - out}"
        raise DataError(
            f"{key} {fraction} {side} of the {n} images for {held if out < k else 'training'}, "
            f"fewer than the {k} classes (a stratified split needs one image of each class on "
            f"each side): set {key} {fix}, or add images"
        )
    return train_test_split(x, y, test_size=fraction, stratify=y, random_state=seed)


def split(x, y, x_test, y_test, cfg: DataConfig, seed: int) -> dict[str, np.ndarray]:
    """x_ and y_ train, val and test: the test split carved from `x` where the source has none
    (`x_test` None), then the validation split, both stratified with `seed`, and the training
    split capped at `cfg.subset`. `x` may be images or their positions."""
    if x_test is None:
        x, x_test, y, y_test = _carve(x, y, cfg.test_fraction, "data.test_fraction", "test", seed)
    x_train, x_val, y_train, y_val = _carve(
        x, y, cfg.val_fraction, "data.val_fraction", "validation", seed
    )
    if cfg.subset is not None:
        x_train, y_train = _stratified_cap(x_train, y_train, cfg.subset, seed)
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_val": x_val,
        "y_val": y_val,
        "x_test": x_test,
        "y_test": y_test,
    }


def card(cfg: DataConfig, classes, tensors: dict[str, Tensor], sample: Tensor, **extra) -> dict:
    """The card of prepared `tensors`: sizes, classes, the images' shape, and their
    per-channel mean and std measured on `sample` (uint8 training images)."""
    mean, std = moments(sample)
    return {
        "format_version": FORMAT_VERSION,
        "name": cfg.name,
        "classes": classes,
        "shape": list(sample.shape[1:]),
        **{f"n_{s}": len(tensors[f"y_{s}"]) for s in ("train", "val", "test")},
        "mean": mean,  # in stored (uint8) units
        "std": std,
        **extra,
        "sha256": _digest(tensors),
    }


def moments(x: Tensor, chunk: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation (n - 1) of uint8 images (N, C, H, W), summed in
    float64 a chunk of images at a time (the whole set in float64 would take 8× its size)."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for part in x.split(chunk):
        part = part.double()
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    n = x.numel() // x.shape[1]
    mean = total / n
    var = (squares - n * mean.square()) / max(n - 1, 1)
    return mean.tolist(), var.clamp_min(0).sqrt().clamp_min(1e-6).tolist()


def _digest(tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_data(prepared: Prepared, path: str | Path) -> Path:
    """Write the tensor file and its card (same stem, `.json`); return the card's path."""
    path = Path(path)
    torch_save(
        path,
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "card": json.dumps(prepared.card),
            **prepared.tensors,
        },
    )
    card_path = path.with_suffix(".json")
    write_json(card_path, prepared.card)
    return card_path


def load_data(path: str | Path) -> Prepared:
    """Read a prepared tensor file (safely: no pickled code runs) and check its content hash."""
    hint = "re-run `alphaprune prepare`"
    blob = safe_load(path, "prepared data file", format=FORMAT, version=FORMAT_VERSION, hint=hint)
    del blob["format"], blob["format_version"]
    try:
        card = json.loads(blob.pop("card"))
    except (KeyError, TypeError, ValueError):
        raise FileFormatError(f"{path}: not a readable prepared data file; {hint}") from None
    if not isinstance(card, dict) or card.get("format_version") != FORMAT_VERSION:
        version = card.get("format_version") if isinstance(card, dict) else None
        raise FileFormatError(
            f"{path}: format version {version}, this alphaprune reads {FORMAT_VERSION}; {hint}"
        )
    if _digest(blob) != card.get("sha256"):
        raise FileFormatError(f"{path}: content does not match its recorded hash; {hint}")
    return Prepared(blob, card)
