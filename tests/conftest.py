"""Shared fixtures: a tiny digits configuration, its prepared data and a trained teacher, made
once per session in a temporary folder (never in the repository)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from alphaprune.pipeline import data
from alphaprune.pipeline.config import Params
from alphaprune.pipeline.paramsfile import resolve
from alphaprune.pipeline.stages.pretrain import pretrain

TINY = {
    "seed": 0,
    "data": {"name": "digits"},
    "model": {"name": "cnn"},
    "teacher": {"epochs": 6, "batch_size": 64, "optimizer": {"lr": 0.05}},
    "prune": {
        "amount": 0.65,
        "schedule": {"kind": "exponential", "rate": 0.3, "alpha_min": 0.1},
        "advance": {"patience": 1, "min_epochs": 1, "max_epochs": 2},
        "epochs": 12,
        "finetune_epochs": 3,
        "optimizer": {"lr": 0.02},
    },
    "variants": {"base": {}},
    "runtime": {"device": "cpu"},
}


def tiny_params(**variants) -> Params:
    raw = copy.deepcopy(TINY)
    if variants:
        raw["variants"] = variants
    return resolve(raw, "tiny")


@pytest.fixture
def tiny_raw() -> dict:
    """The tiny configuration as the mapping a params.yaml would hold."""
    return copy.deepcopy(TINY)


@pytest.fixture(name="tiny_params")
def _tiny_params_factory():
    """`tiny_params(**variants)`: the tiny configuration, optionally with other variants."""
    return tiny_params


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("alphaprune")


@pytest.fixture(scope="session")
def prepared_path(workdir) -> Path:
    path = workdir / "data" / "digits.pt"
    params = tiny_params()
    data.save(data.prepare(params.data, params.seed), path)
    return path


@pytest.fixture(scope="session")
def teacher_dir(workdir, prepared_path) -> Path:
    out = workdir / "teacher"
    pretrain(tiny_params(), prepared_path, out)
    return out


# ------------------------------------------------------------------ image folder trees
CLASSES = ["cat", "dog", "emu"]


def write_png(path: Path, seed: int, shape=(3, 6, 5)) -> torch.Tensor:
    """A random image saved as PNG (lossless): the tensor is what a decoder must return."""
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    path.parent.mkdir(parents=True, exist_ok=True)
    hwc = image.permute(1, 2, 0).numpy()
    Image.fromarray(hwc[:, :, 0] if shape[0] == 1 else hwc).save(path)
    return image


@pytest.fixture
def image_tree(tmp_path) -> tuple[Path, dict]:
    """root/images/{train,test}/<class>/<n>.png with known pixels (PNG is lossless)."""
    root, pixels = tmp_path / "tree", {}
    for split, n in (("train", 12), ("test", 3)):
        for c, name in enumerate(CLASSES):
            for i in range(n):
                rel = f"images/{split}/{name}/{i:02d}.png"
                seed = 1000 * (split == "test") + 100 * c + i
                pixels[rel] = (write_png(root / rel, seed), c)
    return root, pixels
