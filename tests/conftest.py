"""Shared fixtures: a tiny digits configuration, its prepared data and a trained teacher, made
once per session in a temporary folder (never in the repository), and what running the suite in
parallel needs (`make test` runs it on every core with pytest-xdist).

In parallel, the prepared data and the teacher are made once, by the controlling process before
its workers start, and every worker reads the same files (tests only read them). Each worker
gets an equal share of the cores for torch, so that workers do not oversubscribe them."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from alphaprune.pipeline.data.prepared import save_data
from alphaprune.pipeline.data.sources import prepare
from alphaprune.pipeline.params.loader import resolve
from alphaprune.pipeline.params.schema import Params
from alphaprune.pipeline.stages.pretrain import pretrain

TINY = {
    "seed": 0,
    "data": {"name": "digits"},
    "model": {"name": "cnn"},
    "teacher": {"epochs": 6, "batch_size": 64, "optimizer": {"lr": 0.05}},
    "prune": {  # the seed's recipe (params.yaml's `seed`), which the variants change
        "amount": 0.65,
        "branch": "pointwise",
        "init": "random",
        "trainable": "branches",
        "recalibrate_bn": 0,
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


# --------------------------------------------------------------------- running in parallel
def _cores_per_worker() -> int:
    """The cores each process of the run may use: all of them, or a worker's share."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // workers)


def pytest_configure(config) -> None:
    # Two workers on two cores, each with torch's default of two threads (and Snakemake jobs in
    # subprocesses), ran the suite 1.5x slower than one process: OpenMP threads spinning for a
    # core another process holds. Each worker takes its share, and so do the commands it starts;
    # idle OpenMP threads sleep instead of spinning (Snakemake sets each job's thread count).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "PYTEST_XDIST_WORKER" in os.environ:
        threads = _cores_per_worker()
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


# The modules whose assertions are about float results the CPU's kernels could change (a
# tolerance, or two computations said to be equal): `make test-isa` runs them as a CPU with
# SSE4.1 only would (ATen's default kernels, oneDNN capped at SSE4.1), beside `make test`'s
# native run. What they compare is either exactly equal by construction (the same computation
# twice) or held to a bound derived from the arithmetic, not fitted to one machine.
NUMERICS = {
    "test_augment",
    "test_blend",
    "test_budget",
    "test_channels",
    "test_costs",
    "test_distributed",
    "test_launch",
    "test_lsq",
    "test_layers",
    "test_modelfile",
    "test_norms",
    "test_runtime",
    "test_student",
    "test_export",
    "test_channel_readers",
    "test_dwsep",
    "test_lowrank",
    "test_pointwise",
    "test_sparse",
}


def _unit(item: pytest.Item) -> tuple[str, str]:
    """What pytest-xdist (--dist loadscope) hands a worker at once: a class, or a module's
    functions."""
    return str(item.path), item.cls.__name__ if item.cls is not None else ""


def _seconds(item: pytest.Item) -> float:
    """The time the `slow` marker says its test, class or module takes on a 2-core machine
    (`pytest.mark.slow(seconds=...)`); 0 for a test not marked slow."""
    marker = item.get_closest_marker("slow")
    return 0.0 if marker is None else float(marker.kwargs.get("seconds", 1))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Marks the NUMERICS modules' tests; then orders the work units (a class, or a module's
    functions) longest first, by their `slow` markers' seconds: pytest-xdist hands a worker
    the next unit when it is almost done with its last, so the long units start first and the
    short ones fill in around them (longest-first scheduling). Ordered by the markers alone,
    fast modules ran last and test_fit (100 s) started at 347 s of 445 on one worker while
    the other had finished at 398."""
    for item in items:
        if item.path.stem in NUMERICS:
            item.add_marker(pytest.mark.numerics)
    weight: dict[tuple[str, str], float] = {}
    for item in items:
        unit = _unit(item)
        weight[unit] = max(weight.get(unit, 0.0), _seconds(item))
    items.sort(key=lambda item: -weight[_unit(item)])  # stable: a unit stays in file order


SHARED = "alphaprune_shared"  # the workers' input naming the folder of the shared set-ups


def make_shared(root: Path) -> Path:
    """The tiny configuration's prepared digits (data/digits.pt) and its trained teacher
    (teacher/) under `root`: the session's read-only set-ups."""
    params = tiny_params()
    save_data(prepare(params.data, params.seed), root / "data" / "digits.pt")
    pretrain(params, root / "data" / "digits.pt", root / "teacher")
    return root


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist, in the controlling process, for each worker it starts: the shared set-ups, made
    for the first and handed to every one."""
    config = node.config
    if not hasattr(config, "_alphaprune_shared"):
        config._alphaprune_shared = make_shared(Path(tempfile.mkdtemp(prefix="alphaprune-")))
    node.workerinput[SHARED] = str(config._alphaprune_shared)


def pytest_unconfigure(config) -> None:
    if hasattr(config, "_alphaprune_shared"):  # the controller made them: it removes them
        shutil.rmtree(config._alphaprune_shared, ignore_errors=True)


@pytest.fixture(scope="session")
def workdir(request, tmp_path_factory) -> Path:
    """The shared set-ups' folder: the controller's (in parallel), or made here."""
    given = getattr(request.config, "workerinput", {}).get(SHARED)
    return Path(given) if given else make_shared(tmp_path_factory.mktemp("alphaprune"))


@pytest.fixture(scope="session")
def prepared_path(workdir) -> Path:
    return workdir / "data" / "digits.pt"


@pytest.fixture(scope="session")
def teacher_dir(workdir) -> Path:
    return workdir / "teacher"


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
