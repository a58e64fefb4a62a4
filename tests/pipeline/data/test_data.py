"""Prepared data: the digits source split into disjoint, stratified train/val/test tensors,
deterministic per seed, with a card that describes them; the file round-trips and a missing,
truncated, altered or foreign file is refused with a FileFormatError naming it."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from alphaprune.errors import FileFormatError, UnknownNameError
from alphaprune.pipeline.data.prepared import (
    FORMAT_VERSION,
    DataError,
    Prepared,
    Source,
    load_data,
    resize,
    save_data,
)
from alphaprune.pipeline.data.sources import SOURCES, prepare
from alphaprune.pipeline.params.schema import DataConfig
from conftest import CLASSES, write_png

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def prepared() -> Prepared:
    return prepare(DataConfig(name="digits"), seed=0)


@pytest.fixture
def saved(tmp_path, prepared) -> Path:
    path = tmp_path / "prepared" / "digits.pt"
    save_data(prepared, path)
    return path


def _rows(x: torch.Tensor, y: torch.Tensor) -> Counter:
    return Counter((img.numpy().tobytes(), int(label)) for img, label in zip(x, y, strict=True))


def _rewrite(path: Path, change) -> None:
    """Load the saved dict as plain data, let `change` edit it, and save it back."""
    blob = torch.load(path, weights_only=True)
    change(blob)
    torch.save(blob, path)


# ---------------------------------------------------------------------------------- splits
def test_split_sizes_add_up_to_the_whole_set(prepared):
    sizes = {s: len(prepared.split(s)[1]) for s in SPLITS}
    assert sum(sizes.values()) == 1797
    for s in SPLITS:
        x, y = prepared.split(s)
        assert len(x) == len(y) == prepared.card[f"n_{s}"] == sizes[s]
    assert sizes["test"] == pytest.approx(0.2 * 1797, abs=1)
    assert sizes["val"] == pytest.approx(0.1 * (1797 - sizes["test"]), abs=1)


def test_splits_are_a_partition_of_the_source(prepared):
    """Every source example lands in exactly one split (as a multiset of image+label)."""
    d = load_digits()
    source = _rows(torch.from_numpy(d.images.astype(np.uint8)[:, None]), torch.from_numpy(d.target))
    parts = [_rows(*prepared.split(s)) for s in SPLITS]
    assert sum(parts, Counter()) == source
    for i in range(3):
        for j in range(i + 1, 3):
            assert not parts[i].keys() & parts[j].keys()


def test_every_class_in_every_split_in_proportion(prepared):
    full = np.bincount(load_digits().target, minlength=10) / 1797
    for s in SPLITS:
        _, y = prepared.split(s)
        counts = torch.bincount(y, minlength=10).numpy()
        assert (counts > 0).all(), s
        # Stratified: each class's share is within one example of the source's.
        assert np.abs(counts - full * len(y)).max() <= 1.0 + 1e-9, s


def test_dtypes_and_shapes(prepared):
    for s in SPLITS:
        x, y = prepared.split(s)
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert x.shape == (len(y), 1, 8, 8)
        assert y.ndim == 1
        assert int(x.max()) <= 16 and int(y.min()) >= 0 and int(y.max()) <= 9
    assert prepared.shape == (1, 8, 8)
    assert prepared.num_classes == 10
    assert prepared.card["classes"] == [str(c) for c in range(10)]
    assert prepared.card["name"] == "digits"
    assert prepared.card["format_version"] == FORMAT_VERSION


def test_card_mean_and_std_are_the_train_split(prepared):
    x, _ = prepared.split("train")
    xs = x.numpy().astype(np.float64)
    assert prepared.mean == pytest.approx([xs.mean()], rel=1e-12)
    assert prepared.std == pytest.approx([xs.std(ddof=1)], rel=1e-9)
    # Not the whole set's statistics.
    whole = load_digits().images.astype(np.float64)
    assert prepared.mean[0] != pytest.approx(whole.mean(), rel=1e-6)


def test_same_seed_same_tensors_other_seed_other_split(prepared):
    again = prepare(DataConfig(name="digits"), seed=0)
    assert again.card == prepared.card
    for k, v in prepared.tensors.items():
        assert torch.equal(again.tensors[k], v), k
    other = prepare(DataConfig(name="digits"), seed=1)
    assert other.card["sha256"] != prepared.card["sha256"]
    assert not torch.equal(other.tensors["y_train"], prepared.tensors["y_train"])
    assert _rows(*other.split("test")) != _rows(*prepared.split("test"))
    # Still the same sizes.
    for s in SPLITS:
        assert other.card[f"n_{s}"] == prepared.card[f"n_{s}"]


def test_subset_caps_the_training_split_stratified(prepared):
    capped = prepare(DataConfig(name="digits", subset=200), seed=0)
    x, y = capped.split("train")
    assert len(y) == len(x) == capped.card["n_train"] == 200
    counts = torch.bincount(y, minlength=10).numpy()
    full = torch.bincount(prepared.split("train")[1], minlength=10).numpy()
    assert (counts > 0).all()
    assert np.abs(counts - full / full.sum() * 200).max() <= 1.0 + 1e-9
    # The capped examples come from the uncapped training split; val and test are unchanged.
    assert not _rows(x, y) - _rows(*prepared.split("train"))
    for s in ("val", "test"):
        for a, b in zip(capped.split(s), prepared.split(s), strict=True):
            assert torch.equal(a, b)
    # The card describes the capped split.
    assert capped.mean == pytest.approx([x.double().mean().item()])


def test_subset_larger_than_the_split_changes_nothing(prepared):
    big = prepare(DataConfig(name="digits", subset=100_000), seed=0)
    assert big.card == prepared.card


@pytest.mark.parametrize("name", DataConfig.model_fields["name"].annotation.__args__)
def test_every_configurable_source_is_registered(name):
    assert name in SOURCES


def test_unregistered_source_names_the_available_ones(monkeypatch):
    monkeypatch.delitem(SOURCES, "cifar10")
    with pytest.raises(UnknownNameError) as info:
        prepare(DataConfig(name="cifar10"), seed=0)
    msg = str(info.value)
    assert "cifar10" in msg and "known: digits, imagefolder" in msg
    assert "\n" not in msg


# ------------------------------------------------------------------------------ save, load
def test_save_load_round_trip(prepared, saved):
    card_path = saved.with_suffix(".json")
    assert card_path.exists() and card_path.parent == saved.parent
    assert json.loads(card_path.read_text()) == prepared.card
    loaded = load_data(saved)
    assert loaded.card == prepared.card
    assert loaded.tensors.keys() == prepared.tensors.keys()
    for k, v in prepared.tensors.items():
        assert loaded.tensors[k].dtype == v.dtype
        assert torch.equal(loaded.tensors[k], v), k
    # No stray temporary files are left beside the outputs.
    assert sorted(p.name for p in saved.parent.iterdir()) == ["digits.json", "digits.pt"]


def test_save_returns_the_card_path(tmp_path, prepared):
    assert save_data(prepared, tmp_path / "x.pt") == tmp_path / "x.json"


def _assert_refused(path: Path, fragment: str = "") -> None:
    with pytest.raises(FileFormatError) as info:
        load_data(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    assert fragment in msg
    assert "\n" not in msg


def test_missing_file(tmp_path):
    _assert_refused(tmp_path / "nope.pt", "no such")


def test_truncated_file(saved):
    blob = saved.read_bytes()
    saved.write_bytes(blob[: len(blob) // 2])
    _assert_refused(saved, "not a readable")


def test_not_a_torch_file(saved):
    saved.write_text("x_train,y_train\n1,2\n")
    _assert_refused(saved)


def test_a_foreign_torch_file(saved):
    torch.save({"a": torch.zeros(3)}, saved)
    _assert_refused(saved)


def test_file_with_code_is_refused(saved, tmp_path):
    marker = tmp_path / "ran"
    torch.save({"card": "{}", "format_version": 1, "x": _Evil(marker)}, saved)
    _assert_refused(saved)
    assert not marker.exists()


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_altered_tensor_fails_the_hash(saved):
    def change(blob):
        blob["x_train"][0, 0, 0, 0] += 1

    _rewrite(saved, change)
    _assert_refused(saved, "hash")


def test_swapped_labels_fail_the_hash(saved):
    def change(blob):
        blob["y_val"], blob["y_test"] = blob["y_test"], blob["y_val"]

    _rewrite(saved, change)
    _assert_refused(saved, "hash")


def test_reshaped_tensor_fails_the_hash(saved):
    """The content hash must cover each tensor's shape and dtype, not only its bytes: a file
    whose x_train was reshaped to (N, 64) holds the same bytes but is not the prepared data."""

    def change(blob):
        blob["x_train"] = blob["x_train"].reshape(len(blob["x_train"]), 64)

    _rewrite(saved, change)
    _assert_refused(saved, "hash")


@pytest.mark.parametrize("version", [0, 1, 2, 4, None])
def test_other_format_version_is_refused(saved, version):
    def change(blob):
        card = json.loads(blob["card"])
        card["format_version"] = version
        blob["card"] = json.dumps(card)

    _rewrite(saved, change)
    _assert_refused(saved, "format version")


def test_card_without_a_hash_is_refused(saved):
    """A card missing its `sha256` is a corrupt file: DataError, not a bare KeyError."""

    def change(blob):
        card = json.loads(blob["card"])
        del card["sha256"]
        blob["card"] = json.dumps(card)

    _rewrite(saved, change)
    _assert_refused(saved)


# ----------------------------------------------------------------------- image folder sources
def _source(root: Path, **kw) -> Source:
    return SOURCES["imagefolder"](DataConfig(name="imagefolder", root=str(root), **kw))


def test_imagefolder_reads_every_image_with_its_class(image_tree):
    root, pixels = image_tree
    src = _source(root)
    assert src.classes == CLASSES
    assert src.x_train.shape == (36, 3, 6, 5) and src.x_test.shape == (9, 3, 6, 5)
    assert src.x_train.dtype == np.uint8 and src.y_train.dtype == np.int64
    got = Counter((x.tobytes(), int(y)) for x, y in zip(src.x_train, src.y_train, strict=True))
    want = Counter(
        (img.numpy().tobytes(), c) for rel, (img, c) in pixels.items() if "/train/" in rel
    )
    assert got == want


def test_imagefolder_tar_gz_equals_the_folder(image_tree, tmp_path):
    import tarfile

    root, _ = image_tree
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root / "images", arcname="images")
    a, b = _source(root), _source(archive)
    assert a.classes == b.classes
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, key), getattr(b, key)), key


def test_imagefolder_prepare_splits_and_caps(image_tree):
    root, _ = image_tree
    cfg = DataConfig(name="imagefolder", root=str(root), val_fraction=0.25, subset=18)
    prep = prepare(cfg, seed=0)
    assert prep.card["n_train"] == 18 and prep.card["n_val"] == 9 and prep.card["n_test"] == 9
    assert Counter(prep.tensors["y_train"].tolist()) == {0: 6, 1: 6, 2: 6}  # stratified cap
    assert prep.shape == (3, 6, 5) and prep.card["classes"] == CLASSES


@pytest.mark.parametrize(
    "damage,message",
    [
        (
            lambda r: (r / "images/train/emu/00.png").write_bytes(b"\x89PNG not really"),
            r"images/train/emu/00\.png: cannot decode this image",
        ),
        (
            lambda r: (r / "images/train/dog/03.png").write_bytes(
                (r / "images/train/dog/03.png").read_bytes()[:40]
            ),
            r"images/train/dog/03\.png: cannot decode this image",
        ),
        (
            lambda r: write_png(r / "images/train/emu/99.png", 1, shape=(3, 7, 5)),
            r"images/train/emu/99\.png is 3x7x5, but the images before it are 3x6x5",
        ),
        (
            lambda r: write_png(r / "images/test/emu/98.png", 1, shape=(1, 6, 5)),
            r"images/test/emu/98\.png is 1x6x5",
        ),
        (lambda r: (r / "images/train/fox").mkdir(), r"class folder train/fox has no images"),
        (
            lambda r: [p.unlink() for p in (r / "images/test/emu").iterdir()],
            r"class folder test/emu has no images",
        ),
        (
            lambda r: write_png(r / "images/train/yak/00.png", 1),
            r"train and test have different classes \(yak\)",
        ),
        (
            lambda r: shutil.rmtree(r / "images/test"),
            r"no test/<class>/<image> files \(or val/<class>/<image>\) found",
        ),
    ],
    ids=[
        "corrupt",
        "truncated",
        "other-size",
        "other-channels",
        "empty-class-folder",
        "emptied-class-folder",
        "class-only-in-train",
        "no-test-split",
    ],
)
def test_imagefolder_bad_data_names_the_file(image_tree, damage, message):
    root, _ = image_tree
    damage(root)
    with pytest.raises(DataError, match=message) as info:
        _source(root)
    assert "\n" not in str(info.value)


# Split sizes no stratified split can meet: `prepare` says what to set instead of ending in
# scikit-learn's traceback. The tree has 3 classes with 12 training images each (36) and 3 test
# images each; `subset` caps the 36 (after validation is carved) at 18.
@pytest.mark.parametrize(
    "settings,message",
    [
        (  # the ImageNet preset's fraction on 18 images: one validation image for 3 classes
            {"val_fraction": 0.01, "subset": None},
            r"^data\.val_fraction 0\.01 holds out 1 of the 36 images for validation, fewer "
            r"than the 3 classes \(.*\): set data\.val_fraction between 0\.084 and 0\.916, "
            r"or add images$",
        ),
        (
            {"val_fraction": 0.99},
            r"^data\.val_fraction 0\.99 leaves 0 of the 36 images for training, fewer than the "
            r"3 classes .*: set data\.val_fraction between 0\.084 and 0\.916, or add images$",
        ),
        (
            {"val_fraction": 0.25, "subset": 2},
            r"^data\.subset 2 is fewer than the 3 classes: .* set data\.subset to at least 3$",
        ),
    ],
    ids=["val-fraction-too-small", "val-fraction-too-large", "subset-below-the-classes"],
)
def test_split_sizes_no_stratified_split_can_meet_are_one_sentence(image_tree, settings, message):
    root, _ = image_tree
    cfg = DataConfig(name="imagefolder", root=str(root), **settings)
    with pytest.raises(DataError, match=message):
        prepare(cfg, seed=0)


def test_a_class_with_one_image_to_split_is_named(image_tree):
    root, _ = image_tree
    for extra in (root / "images/train/emu").iterdir():
        if extra.name != "00.png":
            extra.unlink()
    cfg = DataConfig(name="imagefolder", root=str(root))
    with pytest.raises(DataError, match=r"data\.val_fraction 0\.1: class 2 has 1 image left"):
        prepare(cfg, seed=0)


def test_a_test_split_too_small_for_the_classes_names_test_fraction():
    cfg = DataConfig(name="digits", test_fraction=0.001)
    with pytest.raises(DataError, match=r"^data\.test_fraction 0\.001 holds out 2 of the 1797 "):
        prepare(cfg, seed=0)


def test_a_subset_dropping_fewer_images_than_classes_keeps_a_seeded_draw(image_tree):
    root, _ = image_tree
    cfg = DataConfig(name="imagefolder", root=str(root), val_fraction=0.25, subset=26)
    first, again = prepare(cfg, seed=0), prepare(cfg, seed=0)
    assert first.card["n_train"] == 26  # of 27: one dropped, fewer than the 3 classes
    assert torch.equal(first.tensors["x_train"], again.tensors["x_train"])


def test_imagefolder_missing_root_and_not_an_archive(tmp_path):
    with pytest.raises(DataError, match=r"nowhere does not exist"):
        _source(tmp_path / "nowhere")
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(DataError, match=r"junk\.tar\.gz: not a readable image folder"):
        _source(junk)


SHARED_CIFAR = Path(__file__).resolve().parents[4] / "shared" / "data" / "cifar10-jpg.tar.gz"


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason=f"{SHARED_CIFAR} is absent")
def test_cifar10_jpeg_archive(tmp_path):
    cfg = DataConfig(name="imagefolder", root=str(SHARED_CIFAR), subset=1000)
    prep = prepare(cfg, seed=0)
    assert prep.card["classes"][:3] == ["airplane", "automobile", "bird"]
    assert prep.shape == (3, 32, 32)
    assert (prep.card["n_train"], prep.card["n_val"], prep.card["n_test"]) == (1000, 5000, 10000)
    assert Counter(prep.tensors["y_train"].tolist()) == {c: 100 for c in range(10)}
    # The published CIFAR-10 channel means, within JPEG's loss and a 1000-image sample's spread.
    assert np.allclose(prep.mean, [125.3, 123.0, 113.9], atol=4)
    save_data(prep, tmp_path / "c.pt")
    assert load_data(tmp_path / "c.pt").card["sha256"] == prep.card["sha256"]


# ------------------------------------------------------------------------------ cifar10 source
def _fake_cifar(root: Path, per_file: int = 4) -> None:
    """The standard python-pickle layout of cifar-10-python.tar.gz, with random pixels."""
    import pickle

    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {
            "data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
            "labels": [int(v) for v in rng.integers(0, 10, per_file)],
        }
        (folder / name).write_bytes(pickle.dumps(batch))
    names = [f"c{i}" for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))


def test_cifar10_reads_the_standard_files(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    _fake_cifar(tmp_path)
    # The real files' md5 sums are checked by torchvision; these fakes have others.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tv_cifar.CIFAR10, "_check_integrity", lambda self: True)
    src = SOURCES["cifar10"](DataConfig(name="cifar10", root=str(tmp_path)))
    assert src.x_train.shape == (20, 3, 32, 32) and src.x_test.shape == (4, 3, 32, 32)
    assert src.classes == [f"c{i}" for i in range(10)]
    import pickle

    first = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    # Row-major 3072 bytes per image: the R plane, then G, then B, each 32x32.
    assert np.array_equal(src.x_train[0], first["data"][0].reshape(3, 32, 32))
    assert src.y_train[:4].tolist() == first["labels"] and src.x_train.dtype == np.uint8


def test_cifar10_missing_and_offline_says_where_to_put_it(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def offline(self):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tv_cifar.CIFAR10, "download", offline)
    with pytest.raises(DataError) as info:
        SOURCES["cifar10"](DataConfig(name="cifar10", root=str(tmp_path / "raw")))
    msg = str(info.value)
    assert "cifar-10-batches-py" in msg and "cifar-10-python.tar.gz" in msg
    assert "network is unreachable" in msg and "\n" not in msg


def test_imagefolder_ignores_hidden_files_and_upper_folders_named_like_splits(image_tree, tmp_path):
    root, _ = image_tree
    (root / "images/train/cat/._00.png").write_bytes(b"macOS resource fork, not an image")
    moved = tmp_path / "train" / "test" / "data"  # folders above the tree named like splits
    moved.parent.mkdir(parents=True)
    shutil.move(root, moved)
    src = _source(moved)
    assert src.x_train.shape[0] == 36 and src.x_test.shape[0] == 9 and src.classes == CLASSES


def test_a_file_of_the_previous_format_says_so(saved):
    """Version 1 files named no format: they are refused as version 1, not as foreign."""

    def change(blob):
        del blob["format"]
        blob["format_version"] = 1

    _rewrite(saved, change)
    _assert_refused(saved, "format version 1, this alphaprune reads 3; re-run")


# ------------------------------------------------------------------------ data.image_size
def test_fit_resizes_the_shorter_side_and_crops_the_centre():
    wide = np.zeros((3, 8, 24), dtype=np.uint8)
    wide[:, :, 8:16] = 255  # only the middle third is white
    assert np.array_equal(resize(wide, 8), np.full((3, 8, 8), 255, dtype=np.uint8))
    tall = np.zeros((1, 40, 20), dtype=np.uint8)
    tall[:, 6:34] = 200  # a margin for the antialiasing filter
    out = resize(tall, 10)  # 20 wide -> 10: 40 rows become 20, their middle 10 kept
    assert out.shape == (1, 10, 10) and (out == 200).all()
    batch = np.stack([wide, wide])
    assert resize(batch, 4).shape == (2, 3, 4, 4)


def test_image_size_makes_a_photo_collection_one_tensor(tmp_path):
    root = tmp_path / "photos"
    shapes = [(3, 6, 5), (3, 17, 9), (1, 8, 8), (4, 12, 30)]  # sizes, grey and RGBA mixed
    for split in ("train", "test"):
        for c, name in enumerate(CLASSES):
            for i, shape in enumerate(shapes):
                write_png(root / split / name / f"{i}.png", 10 * c + i, shape=shape)
    with pytest.raises(DataError, match=r"set data.image_size"):
        _source(root)
    src = _source(root, image_size=4)
    assert src.x_train.shape == (12, 3, 4, 4) and src.x_test.shape == (12, 3, 4, 4)
    grey = src.x_train[2]  # class 0, image 2: grey repeated into three equal channels
    assert np.array_equal(grey[0], grey[1]) and np.array_equal(grey[1], grey[2])
    assert src.y_train.tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_image_size_keeps_a_grey_collection_grey(tmp_path):
    root = tmp_path / "grey"
    for split in ("train", "test"):
        for c, name in enumerate(CLASSES):
            for i, shape in enumerate([(1, 6, 5), (1, 9, 12)]):
                write_png(root / split / name / f"{i}.png", 10 * c + i, shape=shape)
    assert _source(root, image_size=5).x_train.shape == (6, 1, 5, 5)


def test_image_size_resizes_any_source_when_prepared():
    prep = prepare(DataConfig(name="digits", image_size=16), seed=0)
    assert prep.shape == (1, 16, 16)
    assert prep.split("test")[0].shape[1:] == (1, 16, 16)
