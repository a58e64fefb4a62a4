"""Image folders: `root`/train/<class>/* and `root`/test/<class>/* (any folder level above
them), as a folder tree or a tar archive of one, and the two forms they are prepared in.

Resident (`decoded`): every image decoded into one uint8 tensor, read whole by training.
Streamed (`streamed_index`): an index of the files (names, byte offsets in an uncompressed tar,
sizes, modification times, labels, splits) instead of their pixels, so preparing stays cheap;
training reads and decodes each batch from the files (`alphaprune.streamed`). `data.storage`
chooses, `auto` by whether the decoded images would fit `data.memory_gb`.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import logging
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from alphaprune import streamed
from alphaprune.pipeline.data.prepared import (
    IMAGE_SUFFIXES,
    DataError,
    Prepared,
    Source,
    card,
    resize,
)
from alphaprune.pipeline.data.prepared import split as split_arrays
from alphaprune.pipeline.params.schema import DataConfig

STATS_SAMPLE = 2000  # training images decoded for the streamed form's mean and std
log = logging.getLogger(__name__)


def decoded(cfg: DataConfig) -> Source:
    """The image folder decoded (the resident form). The prepared file is one (N, C, H, W)
    tensor: the images must share one size and channel count, or `data.image_size` makes them
    (each resized and centre-cropped as it is decoded, grey and RGBA among RGB made RGB)."""
    root = Path(cfg.root)
    classes, listing = image_listing(root)
    decoded, shape = {}, None
    for split, entries in listing.items():
        xs = []
        for entry in entries:
            image = _decode(f"{root}/{entry.path}", entry.read)  # named whole in any error
            if cfg.image_size is not None:
                xs.append(resize(image, cfg.image_size))
            else:
                shape = shape or image.shape
                if image.shape != shape:
                    raise DataError(
                        f"{root}: {entry.path} is {_dims(image.shape)}, but the images before "
                        f"it are {_dims(shape)}; set data.image_size to resize them to one "
                        "size, or convert them yourself"
                    )
                xs.append(image)
        decoded[split] = (xs, np.asarray([e.label for e in entries], dtype=np.int64))
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


@dataclass(frozen=True)
class ImageFile:
    """One image of an image folder: its path inside the root, its class, its size in bytes and
    modification time (ns), and where it lies in an uncompressed tar archive (None in a folder
    or a compressed one)."""

    path: str
    label: int
    read: Callable[[], bytes]
    size: int
    mtime_ns: int = 0
    offset: int | None = None


def image_listing(
    root: Path, in_place: bool = False
) -> tuple[list[str], dict[str, list[ImageFile]]]:
    """The class names and each split's (train, test) images, by class and then path. Without
    a test/ folder, val/ is the test split (ImageNet's layout: its labelled validation set is
    what papers report). `in_place` reads a tar archive's members where they lie, without
    reading them now, and so refuses a compressed archive."""
    if not root.exists():
        raise DataError(f"data.root: {root} does not exist (an image folder tree or a .tar.gz)")
    found: dict[str, dict[str, list[ImageFile]]] = {"train": {}, "test": {}, "val": {}}
    for path, entry in _image_files(root, in_place):  # entry is None for a folder
        parts = PurePosixPath(path).parts
        depth = 2 if entry is None else 3  # .../<split>/<class>[/<file>]
        split = len(parts) - depth  # counted from the end: any folder above may be "train"
        if split < 0 or parts[split] not in found or parts[-1].startswith("."):
            continue  # not in a split folder, or hidden (e.g. macOS ._name.jpg)
        images = found[parts[split]].setdefault(parts[split + 1], [])
        if entry is not None:
            images.append(entry)
    val = found.pop("val")
    if not found["test"] and val:
        log.info("%s: no test/ folder; val/ is the test split", root)
        found["test"] = val
    for split, by_class in found.items():
        if not by_class:
            also = " (or val/<class>/<image>)" if split == "test" else ""
            raise DataError(f"{root}: no {split}/<class>/<image> files{also} found")
        empty = [name for name, images in by_class.items() if not images]
        if empty:
            raise DataError(f"{root}: class folder {split}/{empty[0]} has no images")
    classes = sorted(found["train"])
    if sorted(found["test"]) != classes:
        extra = sorted(set(found["train"]) ^ set(found["test"]))
        raise DataError(f"{root}: train and test have different classes ({', '.join(extra)})")
    listing = {
        split: [
            dataclasses.replace(entry, label=label)
            for label, name in enumerate(classes)
            for entry in sorted(by_class[name], key=lambda e: e.path)
        ]
        for split, by_class in found.items()
    }
    return classes, listing


def _image_files(root: Path, in_place: bool) -> Iterator[tuple[str, ImageFile | None]]:
    """(path inside root, its file) for every image file, and (path, None) for every folder,
    from a folder tree or a tar archive (labels are filled in by `image_listing`)."""
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            if path.is_dir():
                yield rel, None
            elif path.suffix.lower() in IMAGE_SUFFIXES:
                stat = path.stat()
                yield rel, ImageFile(rel, -1, path.read_bytes, stat.st_size, stat.st_mtime_ns)
        return
    if in_place and _compressed(root):
        raise DataError(
            f"{root}: a compressed archive cannot be read in place; streamed data reads an "
            f"image folder or an uncompressed .tar: extract it, or gunzip it to a .tar"
        )
    try:
        with tarfile.open(root, "r:" if in_place else "r") as tar:
            for member in tar:
                if member.isdir():
                    yield member.name.rstrip("/"), None
                elif member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES:
                    if in_place:
                        at, n = member.offset_data, member.size
                        read = functools.partial(_read_at, root, at, n)
                        mtime = int(member.mtime * 1e9)
                        yield member.name, ImageFile(member.name, -1, read, n, mtime, at)
                    else:
                        data = tar.extractfile(member).read()
                        yield member.name, ImageFile(member.name, -1, lambda d=data: d, len(data))
    except (tarfile.TarError, OSError, EOFError) as err:
        raise DataError(f"{root}: not a readable image folder or .tar(.gz) ({err})") from None


def _compressed(path: Path) -> bool:
    with open(path, "rb") as f:
        magic = f.read(6)
    return magic[:2] == b"\x1f\x8b" or magic[:3] == b"BZh" or magic == b"\xfd7zXZ\x00"


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


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


def _with_channels(image: np.ndarray, c: int) -> np.ndarray:
    """(C, H, W) with `c` channels: grey repeated to RGB, an alpha channel dropped."""
    if image.shape[0] == 1 and c == 3:
        return np.repeat(image, 3, axis=0)
    return image[:c]


def _dims(shape) -> str:
    c, h, w = shape
    return f"{c}x{h}x{w}"


def streamed_index(cfg: DataConfig, seed: int) -> Prepared | None:
    """The streamed form of `cfg.root`, or None where `data.storage: auto` finds the decoded
    images fit `data.memory_gb` (then they are prepared resident). The splits are the resident
    form's: the same stratified draws, on the files' positions instead of their pixels."""
    root = Path(cfg.root)
    if cfg.storage == "auto" and root.is_file() and _compressed(root):
        return None  # a compressed archive is only read whole (resident)
    classes, listing = image_listing(root, in_place=True)
    train, test = listing["train"], listing["test"]
    size = cfg.image_size or max(_header(train[0])[1])
    need = (len(train) + len(test)) * 3 * size * size
    if cfg.storage == "auto" and need <= cfg.memory_gb * 1e9:
        return None
    if cfg.image_size is None:
        why = "data.storage is streamed"
        if cfg.storage == "auto":
            why = f"decoded they would take {need / 1e9:.1f} GB, over data.memory_gb"
        raise DataError(
            f"{root}: set data.image_size: the images are streamed from their files ({why}), "
            "and a batch needs one size"
        )
    other = [f.path for f in train + test if Path(f.path).suffix.lower() not in streamed.SUFFIXES]
    if other:
        raise DataError(
            f"{root}: streamed data decodes JPEG, PNG, GIF and WebP files; {len(other)} are not "
            f"(e.g. {other[0]}): convert them, or set data.storage: resident"
        )
    labels = np.asarray([f.label for f in train], dtype=np.int64)
    test_labels = np.asarray([f.label for f in test], dtype=np.int64)
    positions = split_arrays(
        np.arange(len(train)), labels, np.arange(len(test)), test_labels, cfg, seed
    )
    tensors = {}
    for name in ("train", "val", "test"):
        files = [(test if name == "test" else train)[i] for i in positions[f"x_{name}"]]
        tensors[f"y_{name}"] = torch.from_numpy(np.ascontiguousarray(positions[f"y_{name}"]))
        names = b"\0".join(os.fsencode(f.path) for f in files)
        tensors[f"names_{name}"] = torch.frombuffer(bytearray(names), dtype=torch.uint8)
        tensors[f"sizes_{name}"] = torch.tensor([f.size for f in files], dtype=torch.int64)
        # in the hash, so that a file changed in place changes the index (and what depends on it)
        tensors[f"mtimes_{name}"] = torch.tensor([f.mtime_ns for f in files], dtype=torch.int64)
        if root.is_file():
            tensors[f"offsets_{name}"] = torch.tensor([f.offset for f in files], dtype=torch.int64)
    prepared = Prepared(tensors, {"root": str(root.resolve()), "storage": "streamed"})
    grey = len(train) + len(test) <= STATS_SAMPLE and all(
        _header(f)[0] == "L" for f in train + test
    )
    sample = _stats_sample(prepared, 1 if grey else 3, cfg.image_size, seed)
    log.info(
        "indexed %d train, %d val and %d test images under %s, to be streamed at %d px "
        "(decoded they would take %.1f GB)",
        *(len(tensors[f"y_{name}"]) for name in ("train", "val", "test")),
        root,
        cfg.image_size,
        need / 1e9,
    )
    extra = {"storage": "streamed", "root": str(root.resolve())}
    return Prepared(tensors, card(cfg, classes, tensors, sample, **extra))


def _stats_sample(prepared: Prepared, channels: int, size: int, seed: int) -> torch.Tensor:
    """Up to STATS_SAMPLE training images (all of them, in order, when there are no more),
    decoded as training will decode them."""
    files = prepared.files("train")
    n = len(files)
    picked = np.arange(n)
    if n > STATS_SAMPLE:
        picked = np.sort(np.random.default_rng(seed).choice(n, STATS_SAMPLE, replace=False))
    dataset = streamed.DecodedFiles(files, channels, size)
    return dataset[torch.from_numpy(picked)]


def _header(file: ImageFile) -> tuple[str, tuple[int, int]]:
    """An image's mode and size, from its header alone."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(file.read())) as image:
            return image.mode, image.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise DataError(f"{file.path}: cannot read this image ({err})") from None
