"""The sources data is prepared from (a registry: digits, CIFAR-10, image folders) and the
`prepare` step: a source decoded once, resized where asked, split, and carded
(`alphaprune.pipeline.data.prepared`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from alphaprune.pipeline.data import imagefolder
from alphaprune.pipeline.data.prepared import DataError, Prepared, Source, card, resize, split
from alphaprune.pipeline.params.schema import DataConfig
from alphaprune.registry import Registry

log = logging.getLogger(__name__)

SOURCES: Registry[Callable[[DataConfig], Source]] = Registry("data source")
register_source = SOURCES.register


@register_source("digits")
def _digits(cfg: DataConfig) -> Source:
    """scikit-learn's bundled 8×8 handwritten digits (pixel values 0..16): no download."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    return Source(x, d.target.astype(np.int64), None, None, [str(c) for c in d.target_names])


@register_source("cifar10")
def _cifar10(cfg: DataConfig) -> Source:
    """CIFAR-10 through torchvision: the standard python files under `root`, downloaded there
    first if they are missing and the network allows."""
    from torchvision.datasets import CIFAR10

    root = Path(cfg.root)
    try:
        train, test = (CIFAR10(root, train=t, download=False) for t in (True, False))
    except RuntimeError:  # torchvision: "Dataset not found or corrupted"
        log.info("CIFAR-10 not found under %s; downloading it", root)
        try:
            train, test = (CIFAR10(root, train=t, download=True) for t in (True, False))
        except Exception as err:  # noqa: BLE001 - offline, proxy, disk: all end the same way
            raise DataError(
                f"data.root: CIFAR-10 is not under {root / CIFAR10.base_folder} and could not "
                f"be downloaded ({err.__class__.__name__}: {err}); put the extracted "
                f"{CIFAR10.filename} ({CIFAR10.url}) there, or use data.name: imagefolder"
            ) from None
    return Source(
        np.ascontiguousarray(train.data.transpose(0, 3, 1, 2)),
        np.asarray(train.targets),
        np.ascontiguousarray(test.data.transpose(0, 3, 1, 2)),
        np.asarray(test.targets),
        list(train.classes),
    )


@register_source("imagefolder")
def _imagefolder(cfg: DataConfig) -> Source:
    """`root`/train/<class>/* and `root`/test/<class>/* (any folder level above them), or a
    .tar(.gz) of such a tree, read without extracting it (`imagefolder`)."""
    return imagefolder.decoded(cfg)


def prepare(cfg: DataConfig, seed: int) -> Prepared:
    """Load `cfg.name`, split train/val(/test), and compute the card. An image folder too large
    to hold decoded (`data.storage`) is prepared as an index of its files instead."""
    if cfg.name == "imagefolder" and cfg.storage != "resident":
        index = imagefolder.streamed_index(cfg, seed)
        if index is not None:
            return index
    src = SOURCES.lookup(cfg.name)(cfg)
    x, x_test = src.x_train, src.x_test
    if cfg.image_size is not None:  # a no-op where the source already fitted its images
        x = resize(x, cfg.image_size)
        x_test = None if x_test is None else resize(x_test, cfg.image_size)
    arrays = split(x, src.y_train, x_test, src.y_test, cfg, seed)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    return Prepared(tensors, card(cfg, src.classes, tensors, tensors["x_train"]))
