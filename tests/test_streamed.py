"""Streamed splits: files read from a folder or in place from an uncompressed tar, decoded and
fitted to one size; a streamed split gives the batches the resident form of the same images
gives, with DataLoader workers or without."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from alphaprune import streamed
from alphaprune.batches import DeviceData
from alphaprune.errors import FileFormatError
from alphaprune.runtime import Runtime
from conftest import write_png

CPU = Runtime(torch.device("cpu"), workers=0)
SHAPES = [(3, 6, 5), (3, 17, 9), (1, 8, 8), (4, 12, 30)]  # sizes, grey and RGBA mixed


@pytest.fixture
def photos(tmp_path):
    """Nine PNGs of mixed sizes and channels: (folder Files, tar Files, decoded images)."""
    names, images = [], []
    for i in range(9):
        name = f"d{i % 3}/{i}.png"
        images.append(write_png(tmp_path / "photos" / name, i, shape=SHAPES[i % 4]))
        names.append(name)
    sizes = torch.tensor([(tmp_path / "photos" / n).stat().st_size for n in names])
    folder = streamed.Files(str(tmp_path / "photos"), np.array(names, dtype="S"), sizes)
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, "w") as tar:
        for n in names:
            tar.add(tmp_path / "photos" / n, arcname=n)
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar}
        offsets = torch.tensor([members[n].offset_data for n in names])
    archived = streamed.Files(str(archive), folder.names, sizes, offsets)
    return folder, archived, images


def test_a_tar_member_reads_as_its_file(photos):
    folder, archive, _ = photos
    for i in range(len(folder)):
        assert archive.read(i) == folder.read(i)
    with open(archive.root, "rb") as f:
        assert archive.read(3, f.fileno()) == folder.read(3)


def test_a_file_changed_or_gone_since_indexing_says_to_prepare_again(photos):
    folder, archive, _ = photos
    path = f"{folder.root}/{folder.name(1)}"
    with open(path, "ab") as f:
        f.write(b"more")
    with pytest.raises(
        FileFormatError, match=r"1.png is \d+ bytes, \d+ when it was indexed.*re-run"
    ):
        folder.read(1)
    import os

    os.unlink(path)
    with pytest.raises(FileFormatError, match=r"cannot read d1/1.png.*re-run"):
        folder.read(1)
    short = streamed.Files(archive.root, archive.names, archive.sizes + 10**6, archive.offsets)
    with pytest.raises(FileFormatError, match="when it was indexed"):
        short.read(0)  # past the archive's end: fewer bytes than indexed


def test_decode_gives_the_pixels_in_the_asked_channels(photos):
    folder, _, images = photos
    assert torch.equal(streamed.decode(folder.read(0), 3), images[0])
    grey = streamed.decode(folder.read(2), 3)  # a grey PNG, repeated to RGB
    assert torch.equal(grey, images[2].expand(3, -1, -1))
    assert torch.equal(streamed.decode(folder.read(3), 3), images[3][:3])  # alpha dropped
    assert streamed.decode(folder.read(0), 1).shape == (1, 6, 5)


def test_decode_scales_a_16_bit_png_to_8_bits(tmp_path):
    from PIL import Image

    deep = np.array([[0, 257 * 100], [65535, 257 * 7]], dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    out = streamed.decode((tmp_path / "deep.png").read_bytes(), 1)
    assert out.dtype == torch.uint8 and out.flatten().tolist() == [0, 100, 255, 7]


def test_an_undecodable_file_is_named(tmp_path):
    with pytest.raises(FileFormatError, match=r"broken.png: cannot decode"):
        streamed.decode(b"\x89PNG not really", 3, "broken.png")


def test_fit_resizes_the_shorter_side_and_crops_the_centre():
    wide = torch.zeros(3, 8, 24, dtype=torch.uint8)
    wide[:, :, 8:16] = 255  # only the middle third is white
    assert torch.equal(streamed.fit(wide, 8), torch.full((3, 8, 8), 255, dtype=torch.uint8))
    square = torch.randint(0, 255, (3, 5, 5), dtype=torch.uint8)
    assert streamed.fit(square, 5) is square


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("source", ["folder", "tar"])
def test_streamed_batches_are_the_resident_batches(photos, workers, source):
    folder, archive, images = photos
    files = folder if source == "folder" else archive
    size = 4
    resident_x = torch.stack(
        [streamed.fit(streamed.decode(folder.read(i), 3), size) for i in range(9)]
    )
    y = torch.arange(9) % 3
    mean, std = [100.0, 110.0, 120.0], [50.0, 55.0, 60.0]
    runtime = Runtime(torch.device("cpu"), workers=workers)
    stream = streamed.StreamedData(files, y, mean, std, runtime, shape=(3, size, size))
    resident = DeviceData(resident_x, y, mean, std, runtime)
    for gen in (None, 1):  # evaluation order, then a training shuffle

        def draws(split, gen=gen):
            g = None if gen is None else torch.Generator().manual_seed(gen)
            return list(split.batches(4, g))

        got, want = draws(stream), draws(resident)
        assert len(got) == len(want) == (3 if gen is None else 2)
        for (xa, ya, ia), (xb, yb, ib) in zip(got, want, strict=True):
            assert torch.equal(ia, ib) and torch.equal(ya, yb) and torch.equal(xa, xb)
    assert torch.equal(stream.examples(2), resident.examples(2))


def test_streamed_images_must_be_square(photos):
    folder, _, _ = photos
    with pytest.raises(ValueError, match="square"):
        streamed.StreamedData(folder, torch.zeros(9), [0.0], [1.0], CPU, shape=(3, 4, 5))


@pytest.fixture
def jpegs(tmp_path):
    """Eight JPEGs of mixed sizes, one grey, under a folder: its Files."""
    from PIL import Image

    names = []
    gen = torch.Generator().manual_seed(0)
    for i, (h, w) in enumerate([(12, 9), (7, 20), (16, 16), (9, 11)] * 2):
        image = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=gen).numpy()
        name = f"c{i % 2}/{i}.JPEG"  # ImageNet's suffix, in capitals
        (tmp_path / "j" / name).parent.mkdir(parents=True, exist_ok=True)
        picture = Image.fromarray(image)
        (picture.convert("L") if i == 3 else picture).save(tmp_path / "j" / name, quality=90)
        names.append(name)
    sizes = torch.tensor([(tmp_path / "j" / n).stat().st_size for n in names])
    return streamed.Files(str(tmp_path / "j"), np.array(names, dtype="S"), sizes)


@pytest.mark.parametrize("workers", [0, 2])
def test_jpegs_decoded_a_batch_at_a_time_on_the_device_are_the_workers_images(jpegs, workers):
    """`decode_on` (CUDA in a run; the CPU here): the workers only read the files, and the
    batch is decoded in one call where training runs. The images are the ones the workers
    decode (on a GPU, nvJPEG's may differ from libjpeg's by rounding: not measured here)."""
    y = torch.arange(8) % 2
    runtime = Runtime(torch.device("cpu"), workers=workers)
    args = (jpegs, y, [120.0] * 3, [60.0] * 3, runtime)
    by_workers = streamed.StreamedData(*args, shape=(3, 6, 6))
    on_device = streamed.StreamedData(*args, shape=(3, 6, 6), decode_on=torch.device("cpu"))
    flat, lengths = on_device.dataset[torch.tensor([0, 1])]  # the files' bytes, not pixels
    assert lengths.tolist() == [int(jpegs.sizes[0]), int(jpegs.sizes[1])]
    assert flat.dtype == torch.uint8 and len(flat) == lengths.sum()
    for gen in (None, 3):
        g = None if gen is None else torch.Generator().manual_seed(gen)
        h = None if gen is None else torch.Generator().manual_seed(gen)
        got, want = list(on_device.batches(3, g)), list(by_workers.batches(3, h))
        assert len(got) == len(want) > 0
        for (xa, ya, ia), (xb, yb, ib) in zip(got, want, strict=True):
            assert torch.equal(ia, ib) and torch.equal(ya, yb) and torch.equal(xa, xb)
    assert torch.equal(on_device.examples(2), by_workers.examples(2))


def test_only_jpegs_are_decoded_on_the_device(photos, jpegs):
    folder, _, _ = photos
    assert jpegs.jpeg_only and not folder.jpeg_only
    with pytest.raises(ValueError, match="only JPEG"):
        streamed.StreamedData(
            folder, torch.zeros(9), [0.0], [1.0], CPU, shape=(3, 4, 4), decode_on=CPU.device
        )


def test_a_batch_with_a_png_named_jpeg_is_decoded_image_by_image(jpegs):
    """ImageNet's training set holds a PNG named .JPEG: the batched JPEG decode fails on its
    batch, which is then decoded one image at a time, as the workers would."""
    write_png(Path(jpegs.root) / "c1/5.JPEG", 5, shape=(3, 10, 10))
    sizes = torch.tensor([os.path.getsize(f"{jpegs.root}/{jpegs.name(i)}") for i in range(8)])
    files = streamed.Files(jpegs.root, jpegs.names, sizes)
    args = (files, torch.zeros(8, dtype=torch.long), [0.0] * 3, [1.0] * 3, CPU)
    on_device = streamed.StreamedData(*args, shape=(3, 6, 6), decode_on=CPU.device)
    by_workers = streamed.StreamedData(*args, shape=(3, 6, 6))
    for (xa, _, _), (xb, _, _) in zip(on_device.batches(4), by_workers.batches(4), strict=True):
        assert torch.equal(xa, xb)
