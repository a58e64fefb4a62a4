"""A split whose images stay compressed in their files and are read, decoded and fitted to one
size batch by batch (`StreamedData`): for a dataset whose decoded pixels would not fit in memory
(ImageNet at 224 px: about 190 GB). The files are an image folder or an uncompressed tar archive,
read in place (`Files`); DataLoader workers read and decode the next batches while the device
trains on this one. The batch order is `Split.order`'s, so a streamed split gives the batches
the resident form of the same images gives, and a resumed run the same order."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from alphaprune.batches import Split
from alphaprune.errors import FileFormatError
from alphaprune.runtime import Runtime

SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp")  # what `decode` reads


@dataclass(frozen=True)
class Files:
    """Where a split's images are: files under the folder `root` at `names`, or members of the
    uncompressed tar archive `root` at byte `offsets` (`names` then only name them). `names`
    is a fixed-width bytes array (file system encoding), not a list of str: DataLoader workers
    share it with no per-name Python object whose reference counts would copy it into each."""

    root: str
    names: np.ndarray  # dtype S: each file's path under `root`, os.fsencode'd
    sizes: Tensor  # int64 bytes a file
    offsets: Tensor | None = None  # int64; None: `root` is a folder

    def __len__(self) -> int:
        return len(self.names)

    def name(self, i: int) -> str:
        return os.fsdecode(bytes(self.names[i]))

    @property
    def jpeg_only(self) -> bool:
        """Whether every file is a JPEG (by its suffix): what `decode_jpegs` can decode."""
        lower = np.char.lower(self.names)
        return bool((np.char.endswith(lower, b".jpg") | np.char.endswith(lower, b".jpeg")).all())

    def read(self, i: int, fd: int | None = None) -> bytes:
        """File `i`'s bytes; `fd`: the archive `root`, opened for reading (else opened here)."""
        size = int(self.sizes[i])
        try:
            if self.offsets is None:
                with open(os.path.join(self.root, self.name(i)), "rb") as f:
                    data = f.read()
            elif fd is None:
                with open(self.root, "rb") as f:
                    data = os.pread(f.fileno(), size, int(self.offsets[i]))
            else:
                data = os.pread(fd, size, int(self.offsets[i]))
        except OSError as err:
            raise FileFormatError(
                f"{self.root}: cannot read {self.name(i)} ({err}); {_HINT}"
            ) from None
        if len(data) != size:
            raise FileFormatError(
                f"{self.root}: {self.name(i)} is {len(data)} bytes, {size} when it was indexed; "
                + _HINT
            )
        return data


_HINT = "the images changed since `alphaprune prepare` indexed them: re-run it"


def decode(data: bytes, channels: int, name: str = "image") -> Tensor:
    """(channels, H, W) uint8 from an encoded image (JPEG, PNG, GIF, WebP): 3 channels make grey
    images RGB and drop alpha, 1 makes colour images grey; 16-bit PNGs are scaled to 8 bits."""
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    try:
        with warnings.catch_warnings():  # torchvision 0.29 points to TorchCodec; see the README
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)
    except (RuntimeError, ValueError) as err:
        raise FileFormatError(f"{name}: cannot decode this image ({err})") from None
    if image.dim() == 4:  # an animated GIF: its first frame
        image = image[0]
    return image if image.dtype == torch.uint8 else to_dtype(image, torch.uint8, scale=True)


def decode_jpegs(data: list[Tensor], channels: int, size: int, device: torch.device) -> Tensor:
    """A batch of encoded JPEGs (uint8 byte tensors in host memory) decoded in one batched call
    on `device` (nvJPEG on CUDA) and fitted to `size`: (B, channels, size, size) uint8 there."""
    from torchvision.io import ImageReadMode, decode_jpeg

    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    try:
        with warnings.catch_warnings():  # as in `decode`
            warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
            images = decode_jpeg(data, mode=mode, device=device)
    except (RuntimeError, ValueError) as err:
        raise FileFormatError(f"a JPEG of this batch cannot be decoded ({err})") from None
    return torch.stack([fit(image, size) for image in images])


def fit(images: Tensor, size: int) -> Tensor:
    """uint8 images (..., C, H, W) resized, the shorter side to `size` (bilinear, antialiased),
    and centre-cropped to size × size: the evaluation transform of ImageNet-style recipes,
    without its margin."""
    from torchvision.transforms.v2 import functional as F

    if images.shape[-2:] == (size, size):
        return images
    return F.center_crop(F.resize(images, size, antialias=True), [size, size])


class StreamedData(Split):
    """One split read from its files: each batch's images decoded and fitted to `size` by the
    DataLoader's workers (`runtime.workers`; 0 decodes in this process), then normalised on the
    device. Only the labels and the file index are held in memory.

    `decode_on`: the workers only read the files, and each batch is decoded there in one
    batched call (`decode_jpegs`; the engine asks for it on CUDA when every file is named a
    JPEG), which spares the CPU cores that decoding ImageNet at GPU speed would need. A batch
    that call cannot decode (a file named .JPEG that is not one) is decoded image by image on
    the CPU, as the workers would."""

    def __init__(
        self,
        files: Files,
        y: Tensor,
        mean,
        std,
        runtime: Runtime,
        *,
        shape,
        decode_on: torch.device | None = None,
    ):
        super().__init__(y, mean, std, runtime)
        channels, size, width = shape
        if size != width:
            raise ValueError(f"streamed images are square, not {size}x{width}")
        if decode_on is not None and not files.jpeg_only:
            raise ValueError("only JPEG files are decoded on the device")
        self.files, self.channels, self.size, self.decode_on = files, channels, size, decode_on
        self._dataset = DecodedFiles(files, channels, size, encoded=decode_on is not None)

    @property
    def dataset(self) -> DecodedFiles:
        return self._dataset

    def images(self, fetched) -> Tensor:
        if self.decode_on is None:
            return fetched
        flat, lengths = fetched
        data = list(flat.split(lengths.tolist()))
        try:
            return decode_jpegs(data, self.channels, self.size, self.decode_on)
        except FileFormatError:  # e.g. a PNG named .JPEG (ImageNet has one): one at a time
            images = [fit(decode(d.numpy().tobytes(), self.channels), self.size) for d in data]
            return torch.stack(images).to(self.decode_on)


class DecodedFiles(torch.utils.data.Dataset):
    """dataset[indices] -> those images, read, decoded and fitted, as one uint8 tensor; or,
    `encoded`, only read: their files' bytes end to end (uint8) and each file's length."""

    def __init__(self, files: Files, channels: int, size: int, encoded: bool = False):
        self.files, self.channels, self.size, self.encoded = files, channels, size, encoded
        self._fd: int | None = None  # the archive, opened once a process (pread needs no seek)

    def __getitem__(self, idx: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        if self.files.offsets is not None and self._fd is None:
            self._fd = os.open(self.files.root, os.O_RDONLY)
        if self.encoded:  # one tensor, not one a file: each would hold a shared-memory handle
            data = [self.files.read(int(i), self._fd) for i in idx]
            flat = torch.frombuffer(bytearray(b"".join(data)), dtype=torch.uint8)
            return flat, torch.tensor([len(d) for d in data])
        return torch.stack([self._image(int(i)) for i in idx])

    def _image(self, i: int) -> Tensor:
        name = f"{self.files.root}/{self.files.name(i)}"
        return fit(decode(self.files.read(i, self._fd), self.channels, name), self.size)

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self) -> dict:  # a worker opens the archive itself
        return {**self.__dict__, "_fd": None}
