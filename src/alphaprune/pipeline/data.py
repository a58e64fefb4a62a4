"""Datasets: sources (a registry), the `prepare` step, and the prepared tensor file.

`prepare` decodes a source once into uint8 tensors (N, C, H, W) with int64 labels, carves a
stratified validation split from the training data with a fixed seed, and writes them to one
``.pt`` file plus a small JSON card (sizes, classes, per-channel mean/std, content hash). Training
reads only that file: nothing is decoded again, and the whole set can live on the GPU.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch import Tensor

from alphaprune.errors import FileFormatError, UserError
from alphaprune.files import safe_load, torch_save, write_json
from alphaprune.pipeline.config import DataConfig
from alphaprune.registry import Registry

FORMAT = "alphaprune-data"
FORMAT_VERSION = 2  # 2: the file names its format (1 did not)
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
    .tar.gz of such a tree, read without extracting it. The prepared file is one (N, C, H, W)
    tensor: the images must share one size and channel count, or `data.image_size` makes them
    (each resized and centre-cropped as it is decoded, grey and RGBA among RGB made RGB)."""
    root = Path(cfg.root)
    if not root.exists():
        raise DataError(f"data.root: {root} does not exist (an image folder tree or a .tar.gz)")
    files: dict[str, dict[str, list[tuple[str, Callable[[], bytes]]]]] = {"train": {}, "test": {}}
    for path, read in _image_files(root):  # read is None for a folder
        parts = PurePosixPath(path).parts
        depth = 2 if read is None else 3  # .../<split>/<class>[/<file>]
        split = len(parts) - depth  # counted from the end: any folder above may be "train"
        if split < 0 or parts[split] not in files or parts[-1].startswith("."):
            continue  # not in a split folder, or hidden (e.g. macOS ._name.jpg)
        images = files[parts[split]].setdefault(parts[split + 1], [])
        if read is not None:
            images.append((path, read))
    for split, by_class in files.items():
        if not by_class:
            raise DataError(f"{root}: no {split}/<class>/<image> files found")
        empty = [name for name, images in by_class.items() if not images]
        if empty:
            raise DataError(f"{root}: class folder {split}/{empty[0]} has no images")
    classes = sorted(files["train"])
    if sorted(files["test"]) != classes:
        extra = sorted(set(files["train"]) ^ set(files["test"]))
        raise DataError(f"{root}: train and test have different classes ({', '.join(extra)})")
    decoded, shape = {}, None
    for split, by_class in files.items():
        xs, ys = [], []
        for label, name in enumerate(classes):
            for path, read in sorted(by_class[name], key=lambda item: item[0]):
                image = _decode(f"{root}/{path}", read)  # named whole in any error
                if cfg.image_size is not None:
                    xs.append(fit(image, cfg.image_size))
                else:
                    shape = shape or image.shape
                    if image.shape != shape:
                        raise DataError(
                            f"{root}: {path} is {_dims(image.shape)}, but the images before it "
                            f"are {_dims(shape)}; set data.image_size to resize them to one "
                            "size, or convert them yourself"
                        )
                    xs.append(image)
                ys.append(label)
        decoded[split] = (xs, np.asarray(ys, dtype=np.int64))
    channels = {x.shape[0] for xs, _ in decoded.values() for x in xs}
    # one channel count (only data.image_size lets them differ): any colour image, all RGB
    colour = channels.pop() if len(channels) == 1 else 3 if channels - {1} else 1
    arrays = {
        split: (np.stack([_with_channels(x, colour) for x in xs]), ys)
        for split, (xs, ys) in decoded.items()
    }
    shape = arrays["train"][0].shape[1:]
    log.info(
        "decoded %d train and %d test images of %s from %s",
        len(arrays["train"][1]),
        len(arrays["test"][1]),
        _dims(shape),
        root,
    )
    return Source(*arrays["train"], *arrays["test"], classes)


def _image_files(root: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(path inside root, reader of its bytes) for every image file, and (path, None) for
    every folder, from a folder tree or a tar archive."""
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_dir():
                yield rel, None
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                yield rel, path.read_bytes
        return
    try:
        with tarfile.open(root) as tar:
            for member in tar:
                if member.isdir():
                    yield member.name.rstrip("/"), None
                elif member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    data = tar.extractfile(member).read()
                    yield member.name, lambda data=data: data
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{root}: not a readable image folder or .tar.gz ({err})") from None


def _decode(path: str, read: Callable[[], bytes]) -> np.ndarray:
    """(C, H, W) uint8 with the file's own channels: grey 1, RGB 3, RGBA 4 (palette -> RGB)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(read())) as image:
            if image.mode not in ("L", "RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            array = np.asarray(image)  # decodes fully: a truncated file fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{path}: cannot decode this image ({err})") from None
    array = array[:, :, None] if array.ndim == 2 else array
    return array.transpose(2, 0, 1)


def fit(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 images (..., C, H, W) resized, the shorter side to `size` (bilinear, antialiased),
    and centre-cropped to size × size: the evaluation transform of ImageNet-style recipes,
    without its margin."""
    from torchvision.transforms.v2 import functional as F

    if images.shape[-2:] == (size, size):
        return images
    x = F.resize(torch.from_numpy(np.array(images)), size, antialias=True)  # a writable copy
    return F.center_crop(x, [size, size]).numpy()


def _with_channels(image: np.ndarray, c: int) -> np.ndarray:
    """(C, H, W) with `c` channels: grey repeated to RGB, an alpha channel dropped."""
    if image.shape[0] == 1 and c == 3:
        return np.repeat(image, 3, axis=0)
    return image[:c]


def _dims(shape) -> str:
    c, h, w = shape
    return f"{c}x{h}x{w}"


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

    src = SOURCES.lookup(cfg.name)(cfg)
    x, y = src.x_train, src.y_train
    if cfg.image_size is not None:  # a no-op where the source already fitted its images
        x = fit(x, cfg.image_size)
    if src.x_test is None:
        x, x_test, y, y_test = train_test_split(
            x, y, test_size=cfg.test_fraction, stratify=y, random_state=seed
        )
    else:
        x_test, y_test = src.x_test, src.y_test
        if cfg.image_size is not None:
            x_test = fit(x_test, cfg.image_size)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=cfg.val_fraction, stratify=y, random_state=seed
    )
    if cfg.subset is not None:
        x_train, y_train = _stratified_cap(x_train, y_train, cfg.subset, seed)
    arrays = {
        "x_train": x_train,
        "y_train": y_train,
        "x_val": x_val,
        "y_val": y_val,
        "x_test": x_test,
        "y_test": y_test,
    }
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


def load(path: str | Path) -> Prepared:
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
