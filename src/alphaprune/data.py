"""Datasets: sources (a registry), the `prepare` step, and the prepared tensor file.

`prepare` decodes a source once into uint8 tensors (N, C, H, W) with int64 labels, carves a
stratified validation split from the training data with a fixed seed, and writes them to one
``.pt`` file plus a small JSON card (sizes, classes, per-channel mean/std, content hash). Training
reads only that file: nothing is decoded again, and the whole set can live on the GPU.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from alphaprune.config import DataConfig
from alphaprune.files import torch_save, write_json

FORMAT_VERSION = 1


class DataError(ValueError):
    """A data file or source is missing, corrupt or inconsistent."""


@dataclass(frozen=True)
class Source:
    """What a source yields: uint8 images (N, C, H, W), int64 labels, class names."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None  # None: carve the test split from the training data
    y_test: np.ndarray | None
    classes: list[str]


SOURCES: dict[str, Callable[[DataConfig], Source]] = {}


def register_source(name: str):
    def deco(fn: Callable[[DataConfig], Source]) -> Callable[[DataConfig], Source]:
        SOURCES[name] = fn
        return fn

    return deco


@register_source("digits")
def _digits(cfg: DataConfig) -> Source:
    """scikit-learn's bundled 8×8 handwritten digits (pixel values 0..16): no download."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    return Source(x, d.target.astype(np.int64), None, None, [str(c) for c in d.target_names])


@dataclass(frozen=True)
class Prepared:
    """A prepared dataset: uint8 images and labels per split, plus its card."""

    tensors: dict[str, Tensor]  # x_train, y_train, x_val, y_val, x_test, y_test
    card: dict

    def split(self, name: str) -> tuple[Tensor, Tensor]:
        return self.tensors[f"x_{name}"], self.tensors[f"y_{name}"]

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
    from sklearn.model_selection import train_test_split

    if n >= len(y):
        return x, y
    x, _, y, _ = train_test_split(x, y, train_size=n, stratify=y, random_state=seed)
    return x, y


def prepare(cfg: DataConfig, seed: int) -> Prepared:
    """Load `cfg.name`, split train/val(/test), and compute the card."""
    from sklearn.model_selection import train_test_split  # slow to import; only needed here

    if cfg.name not in SOURCES:
        known = ", ".join(sorted(SOURCES))
        raise DataError(f"data.name: source {cfg.name!r} is not available yet; available: {known}")
    src = SOURCES[cfg.name](cfg)
    x, y = src.x_train, src.y_train
    if src.x_test is None:
        x, x_test, y, y_test = train_test_split(
            x, y, test_size=cfg.test_fraction, stratify=y, random_state=seed
        )
    else:
        x_test, y_test = src.x_test, src.y_test
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=cfg.val_fraction, stratify=y, random_state=seed
    )
    if cfg.subset is not None:
        x_train, y_train = _stratified_cap(x_train, y_train, cfg.subset, seed)
    arrays = {
        "x_train": x_train, "y_train": y_train, "x_val": x_val,
        "y_val": y_val, "x_test": x_test, "y_test": y_test,
    }  # fmt: skip
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    xf = tensors["x_train"].double()
    card = {
        "format_version": FORMAT_VERSION,
        "name": cfg.name,
        "classes": src.classes,
        "shape": list(x_train.shape[1:]),
        "n_train": len(y_train),
        "n_val": len(y_val),
        "n_test": len(y_test),
        "mean": xf.mean(dim=(0, 2, 3)).tolist(),  # in stored (uint8) units
        "std": xf.std(dim=(0, 2, 3)).clamp_min(1e-6).tolist(),
        "sha256": _digest(tensors),
    }
    return Prepared(tensors, card)


def _digest(tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save(prepared: Prepared, path: str | Path) -> Path:
    """Write the tensor file and its card (same stem, `.json`); return the card's path."""
    path = Path(path)
    torch_save(path, {"format_version": FORMAT_VERSION, "card": json.dumps(prepared.card),
                      **prepared.tensors})  # fmt: skip
    card_path = path.with_suffix(".json")
    write_json(card_path, prepared.card)
    return card_path


def load(path: str | Path) -> Prepared:
    """Read a prepared tensor file (safely: no pickled code runs) and check its content hash."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such prepared data file (run `alphaprune prepare` first)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        card = json.loads(blob.pop("card"))
        blob.pop("format_version")
    except Exception as err:  # noqa: BLE001 - any failure here means the file is unusable
        raise DataError(
            f"{path}: not a readable prepared data file ({err.__class__.__name__})"
        ) from None
    if card.get("format_version") != FORMAT_VERSION:
        raise DataError(f"{path}: format version {card.get('format_version')}, "
                        f"this alphaprune reads {FORMAT_VERSION}; re-run prepare")  # fmt: skip
    if _digest(blob) != card.get("sha256"):
        raise DataError(f"{path}: content does not match its recorded hash; re-run prepare")
    return Prepared(blob, card)
