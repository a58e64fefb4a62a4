"""An image folder prepared streamed: an index of its files (a folder or an uncompressed tar)
instead of their pixels, with the resident form's splits, card and, through the engine, batches
and training; `data.storage: auto` streams only what would not fit `data.memory_gb`; what
cannot be streamed says why."""

from __future__ import annotations

import os
import shutil
import tarfile

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from alphaprune.errors import FileFormatError
from alphaprune.pipeline.data.prepared import DataError, Prepared, load_data, save_data
from alphaprune.pipeline.data.sources import prepare
from alphaprune.pipeline.params.schema import DataConfig
from alphaprune.pipeline.stages.engine import splits
from alphaprune.runtime import Runtime
from conftest import CLASSES, tiny_params, write_png

SHAPES = [(3, 6, 5), (3, 17, 9), (1, 8, 8), (4, 12, 30), (3, 9, 9)]  # sizes, grey, RGBA
SPLITS = ("train", "val", "test")


def _write_jpeg(path, seed: int, shape) -> None:
    from PIL import Image

    c, h, w = shape
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (h, w, 3), dtype=torch.uint8, generator=gen).numpy()
    Image.fromarray(pixels[:, :, 0] if c == 1 else pixels).save(path, quality=85)


@pytest.fixture
def photos(tmp_path):
    """A photo collection: 3 classes × 10 train and 5 test images of mixed size and channels,
    PNG and JPEG, as a folder (root/photos) and as an uncompressed tar of it."""
    root = tmp_path / "photos"
    for split, n in (("train", 10), ("test", 5)):
        for c, name in enumerate(CLASSES):
            for i in range(n):
                seed = 1000 * (split == "test") + 100 * c + i
                path = root / split / name / f"{i:02d}.png"
                write_png(path, seed, shape=SHAPES[i % 5])
                if i % 3 == 1:  # a JPEG instead (CMYK aside, both decoders agree on it)
                    path.unlink()
                    _write_jpeg(path.with_suffix(".jpg"), seed, SHAPES[i % 5][:1] + (20, 17))
    archive = tmp_path / "photos.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname="photos")
    return root, archive


def _prepare(root, **kw) -> Prepared:
    return prepare(DataConfig(name="imagefolder", root=str(root), image_size=4, **kw), 0)


@pytest.mark.parametrize(("source", "subset"), [("folder", None), ("tar", None), ("folder", 12)])
def test_streamed_is_the_resident_form_read_from_the_files(photos, source, subset):
    folder, archive = photos
    root = folder if source == "folder" else archive
    resident = _prepare(folder, storage="resident", subset=subset)
    stream = _prepare(root, storage="streamed", subset=subset)
    assert stream.streamed and not resident.streamed
    assert not any(k.startswith("x_") for k in stream.tensors)  # no pixels in the index
    for key in ("classes", "shape", "n_train", "n_val", "n_test", "mean", "std"):
        assert stream.card[key] == resident.card[key], key
    cpu = Runtime(torch.device("cpu"), workers=0)
    for name in SPLITS:
        assert torch.equal(stream.labels(name), resident.split(name)[1])
        (a,), (b,) = splits(stream, cpu, name), splits(resident, cpu, name)
        gen_a, gen_b = (torch.Generator().manual_seed(3) for _ in range(2))
        for gens in ((None, None), (gen_a, gen_b)):
            got, want = list(a.batches(4, gens[0])), list(b.batches(4, gens[1]))
            assert len(got) == len(want) > 0
            for (xa, ya, _), (xb, yb, _) in zip(got, want, strict=True):
                assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_streamed_file_round_trips_and_its_index_is_hashed(photos, tmp_path):
    folder, _ = photos
    stream = _prepare(folder, storage="streamed")
    save_data(stream, tmp_path / "p.pt")
    back = load_data(tmp_path / "p.pt")
    assert back.card == stream.card
    assert np.array_equal(back.files("val").names, stream.files("val").names)
    blob = torch.load(tmp_path / "p.pt", weights_only=True)
    blob["sizes_test"][0] += 1  # a file that changed size since it was indexed
    torch.save(blob, tmp_path / "p.pt")
    with pytest.raises(FileFormatError, match="hash"):
        load_data(tmp_path / "p.pt")


def test_imagenet_layout_val_is_the_test_split(photos, tmp_path):
    folder, _ = photos
    imagenet = tmp_path / "imagenet"
    shutil.copytree(folder / "train", imagenet / "train")
    shutil.copytree(folder / "test", imagenet / "val")
    a, b = _prepare(folder, storage="streamed"), _prepare(imagenet, storage="streamed")

    def names(p):
        return [n.decode() for n in p.files("test").names]

    assert [n.replace("test/", "val/") for n in names(a)] == names(b)
    shutil.copytree(folder / "test", imagenet / "test")  # a test/ folder wins over val/
    assert names(_prepare(imagenet, storage="streamed")) == names(a)


def test_what_streaming_cannot_decode_is_refused_when_prepared(photos):
    folder, _ = photos
    from PIL import Image

    Image.new("RGB", (5, 5)).save(folder / "train" / CLASSES[1] / "zz.bmp")
    with pytest.raises(DataError, match=r"decodes JPEG, PNG, GIF and WebP files; 1 are not"):
        _prepare(folder, storage="streamed")
    assert _prepare(folder, storage="resident").card["n_train"] > 0  # PIL reads it


def test_large_sets_take_mean_and_std_from_a_sample_and_are_read_as_rgb(
    photos, tmp_path, monkeypatch
):
    from alphaprune.pipeline.data import imagefolder

    grey = tmp_path / "grey"
    for split, n in (("train", 8), ("test", 2)):
        for c, name in enumerate(CLASSES):
            for i in range(n):
                write_png(grey / split / name / f"{i}.png", 100 * c + i, shape=(1, 6, 6))
    assert _prepare(grey, storage="streamed").shape == (1, 4, 4)  # every image grey
    monkeypatch.setattr(imagefolder, "STATS_SAMPLE", 5)
    sampled = _prepare(grey, storage="streamed")
    assert sampled.shape == (3, 4, 4)  # too many to check each: RGB, grey repeated
    stats = imagefolder._stats_sample(sampled, 1, 4, 0)
    assert stats.shape == (5, 1, 4, 4)  # five of the training images, by the seed
    assert sampled.card["mean"] != _prepare(grey, storage="resident").card["mean"]


def test_a_moved_folder_says_to_prepare_again(photos, tmp_path):
    folder, _ = photos
    stream = _prepare(folder, storage="streamed")
    folder.rename(tmp_path / "elsewhere")
    with pytest.raises(FileFormatError, match=r"which is not there.*re-run"):
        splits(stream, Runtime(torch.device("cpu")), "train")


def test_a_file_changed_in_place_changes_the_index(photos):
    folder, _ = photos
    before = _prepare(folder, storage="streamed").card["sha256"]
    victim = folder / "train" / CLASSES[0] / "00.png"
    stat = victim.stat()
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # same size, newer
    assert _prepare(folder, storage="streamed").card["sha256"] != before


def test_auto_streams_only_what_would_not_fit_the_memory_budget(photos):
    folder, archive = photos
    assert not _prepare(folder).streamed  # 45 images of 3x4x4: far under 8 GB
    assert _prepare(folder, memory_gb=1e-6).streamed
    assert _prepare(archive, memory_gb=1e-6).files("train").offsets is not None


def test_what_cannot_be_streamed_says_why(photos, tmp_path):
    folder, _ = photos
    gz = tmp_path / "photos.tar.gz"
    with tarfile.open(gz, "w:gz") as tar:
        tar.add(folder, arcname="photos")
    with pytest.raises(DataError, match=r"cannot be read in place.*gunzip"):
        _prepare(gz, storage="streamed")
    assert not _prepare(gz, memory_gb=1e-6).streamed  # auto: read whole, as before
    with pytest.raises(DataError, match=r"set data.image_size.*over data.memory_gb"):
        prepare(DataConfig(name="imagefolder", root=str(folder), memory_gb=1e-6), 0)
    with pytest.raises(ValidationError, match="needs data.image_size"):
        DataConfig(name="imagefolder", root=str(folder), storage="streamed")
    with pytest.raises(ValidationError, match="reads an imagefolder"):
        DataConfig(name="digits", storage="streamed", image_size=8)


def test_a_teacher_trains_the_same_on_streamed_and_resident_data(photos, tmp_path):
    from alphaprune.loading import load_model
    from alphaprune.pipeline.stages.pretrain import pretrain

    folder, _ = photos
    params = tiny_params()
    params = params.model_copy(
        update={"teacher": params.teacher.model_copy(update={"epochs": 2, "batch_size": 8})}
    )
    weights = []
    for storage in ("resident", "streamed"):
        path = tmp_path / storage / "data.pt"
        save_data(_prepare(folder, storage=storage), path)
        metrics = pretrain(params, path, tmp_path / storage)
        model, _ = load_model(tmp_path / storage / "model.pt")
        weights.append((metrics["test_acc"], model.state_dict()))
    (acc_a, a), (acc_b, b) = weights
    assert acc_a == acc_b
    assert all(torch.equal(a[k], b[k]) for k in a)
