"""Model files: a collapsed student (any branch kind) or a teacher saves and loads from the file
alone with identical outputs; sparse students are physically smaller; files with code, of
another format or version, truncated, missing or with corrupt content raise FileFormatError."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from alphaprune import blend
from alphaprune.blend import Blend
from alphaprune.branches.kinds import BRANCHES
from alphaprune.branches.sparse import Sparse
from alphaprune.errors import FileFormatError
from alphaprune.loading import build_from_recipe, load_model
from alphaprune.modelfile import FORMAT, FORMAT_VERSION, recipe_for, save_model
from alphaprune.models import build_model
from alphaprune.pipeline.params.recipe import PruneConfig
from alphaprune.pipeline.stages.prune import make_student

MODELS = {"cnn": (1, 8, 8), "resnet20": (3, 32, 32)}
KINDS = ["pointwise", "dwsep", "lowrank", "sparse"]


def _teacher(name: str) -> tuple[nn.Module, dict]:
    shape = MODELS[name]
    torch.manual_seed(0)
    model = build_model(name, 10, in_channels=shape[0], image_size=shape[1])
    # Non-trivial BatchNorm statistics, so that a lost buffer would show in the outputs.
    with torch.no_grad():
        model.train()
        model(torch.randn(32, *shape))
    model.eval()
    c = shape[0]
    recipe = recipe_for(name, 10, shape, [0.5] * c, [2.0] * c, [f"c{i}" for i in range(10)])
    return model, recipe


def _student(name: str, kind: str, init: str = "pretrained") -> tuple[nn.Module, dict]:
    teacher, recipe = _teacher(name)
    example = torch.randn(2, *MODELS[name])
    model, plan = make_student(teacher, PruneConfig(branch=kind, init=init), example)
    blend.set_alpha(model, 0.0)
    blend.collapse(model)
    model.eval()
    layers = [{"name": lp.name, "branch": lp.branch, "size": lp.size} for lp in plan.layers]
    assert layers, "the plan must replace at least one layer for this test to mean anything"
    return model, {**recipe, "layers": layers}


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _inputs(name: str) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(5, *MODELS[name])


@pytest.fixture(scope="module")
def students() -> dict[tuple[str, str], tuple[nn.Module, dict]]:
    return {(n, k): _student(n, k) for n in MODELS for k in KINDS}


# ---------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_student_round_trip_from_the_file_alone(tmp_path, students, name, kind):
    model, recipe = students[(name, kind)]
    path = tmp_path / "student.pt"
    save_model(path, model, recipe)
    x = _inputs(name)
    with torch.no_grad():
        expected = model(x)
    state = {k: v.clone() for k, v in model.state_dict().items()}

    loaded, loaded_recipe = load_model(path)  # only the path: no teacher, no student object
    assert loaded is not model
    assert not loaded.training
    assert loaded_recipe == recipe
    with torch.no_grad():
        got = loaded(x)
    assert torch.allclose(got, expected, atol=1e-6)
    assert _n_params(loaded) == _n_params(model)
    # The same state, tensor for tensor. A sparse weight is stored as its kept values plus a
    # bit mask, so only the masked weight (weight_orig × weight_mask) is kept, not weight_orig.
    loaded_state = loaded.state_dict()
    assert loaded_state.keys() == state.keys()
    for k, v in state.items():
        if k.endswith("weight_orig"):
            mask = state[k.removesuffix("_orig") + "_mask"]
            assert torch.equal(loaded_state[k], v * mask), k
        else:
            assert torch.equal(loaded_state[k], v), k
    # It is a student: branches in place of the planned layers, no blends, no originals.
    assert not any(isinstance(m, Blend) for m in loaded.modules())
    for spec in recipe["layers"]:
        assert isinstance(loaded.get_submodule(spec["name"]), BRANCHES[kind])


@pytest.mark.parametrize("kind", ["pointwise", "lowrank"])
def test_dense_students_have_fewer_parameters_than_the_teacher(students, kind):
    teacher, _ = _teacher("resnet20")
    model, _ = students[("resnet20", kind)]
    assert _n_params(model) < 0.36 * _n_params(teacher)


def test_teacher_round_trip(tmp_path):
    for name in MODELS:
        teacher, recipe = _teacher(name)
        assert recipe["layers"] == []
        path = tmp_path / f"{name}.pt"
        save_model(path, teacher, recipe)
        loaded, loaded_recipe = load_model(path)
        assert loaded_recipe == recipe
        assert type(loaded) is type(teacher)
        x = _inputs(name)
        with torch.no_grad():
            assert torch.allclose(loaded(x), teacher(x), atol=1e-6)
        assert _n_params(loaded) == _n_params(teacher)


def test_recipe_for():
    recipe = recipe_for("cnn", 10, (1, 8, 8), (4.9,), (6.0,), range(10))
    assert recipe == {
        "model": {"name": "cnn", "num_classes": 10, "shape": [1, 8, 8]},
        "normalization": {"mean": [4.9], "std": [6.0]},
        "classes": list(range(10)),
        "layers": [],
    }
    json.dumps(recipe)  # a recipe is plain JSON


def test_build_from_recipe_has_the_students_architecture(students):
    model, recipe = students[("resnet20", "lowrank")]
    fresh = build_from_recipe(recipe)
    assert fresh.state_dict().keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert fresh.state_dict()[k].shape == v.shape, k


def test_sparse_student_file_is_physically_smaller(tmp_path, students):
    for name in MODELS:
        teacher, recipe = _teacher(name)
        save_model(tmp_path / "teacher.pt", teacher, recipe)
        save_model(tmp_path / "sparse.pt", *students[(name, "sparse")])
        teacher_size = (tmp_path / "teacher.pt").stat().st_size
        sparse_size = (tmp_path / "sparse.pt").stat().st_size
        # 65% of the parameters are gone; the bit mask costs 1/32 of a dense float weight.
        assert sparse_size < 0.6 * teacher_size, (name, sparse_size, teacher_size)
        blob = torch.load(tmp_path / "sparse.pt", weights_only=True)
        assert not any(k.endswith(("weight_orig", "weight_mask")) for k in blob["state_dict"])


def test_sparse_values_are_only_the_kept_weights(tmp_path, students):
    model, recipe = students[("cnn", "sparse")]
    save_model(tmp_path / "s.pt", model, recipe)
    state = torch.load(tmp_path / "s.pt", weights_only=True)["state_dict"]
    for name, module in model.named_modules():
        if isinstance(module, Sparse):
            mask = module.layer.weight_mask
            key = f"{name}.layer.weight"
            assert state[f"{key}_values"].numel() == int(mask.count_nonzero())
            assert state[f"{key}_bits"].dtype == torch.uint8
            assert state[f"{key}_bits"].numel() == -(-mask.numel() // 8)


def test_random_init_sparse_round_trips_zeros_under_the_mask(tmp_path):
    """Masked-out positions load as zero and kept positions keep their values even when a
    kept weight is exactly zero."""
    model, recipe = _student("cnn", "sparse", init="random")
    name, sparse = next((n, m) for n, m in model.named_modules() if isinstance(m, Sparse))
    with torch.no_grad():
        kept = sparse.layer.weight_mask.bool()
        sparse.layer.weight_orig[kept.nonzero()[0].unbind()] = 0.0
    save_model(tmp_path / "s.pt", model, recipe)
    loaded, _ = load_model(tmp_path / "s.pt")
    branch = loaded.get_submodule(name)
    assert torch.equal(branch.layer.weight_mask, sparse.layer.weight_mask)
    assert torch.equal(branch.equivalent_weight(), sparse.equivalent_weight())
    assert branch.num_params() == sparse.num_params()


def test_loaded_sparse_weight_attribute_is_the_loaded_weight(tmp_path, students):
    """`torch.nn.utils.prune` keeps `layer.weight` as a plain attribute that its forward
    pre-hook recomputes. Right after `load_model` it must already be the loaded masked weight,
    not the randomly initialised one `build_from_recipe` made (stale until the first forward)."""
    model, recipe = students[("cnn", "sparse")]
    save_model(tmp_path / "s.pt", model, recipe)
    loaded, _ = load_model(tmp_path / "s.pt")
    for name, module in loaded.named_modules():
        if isinstance(module, Sparse):
            layer = module.layer
            same = torch.equal(layer.weight, layer.weight_orig * layer.weight_mask)
            assert same, f"{name}.layer.weight is stale after load_model"


def test_save_is_atomic_and_leaves_no_temporaries(tmp_path, students):
    path = tmp_path / "out" / "model.pt"
    save_model(path, *students[("cnn", "pointwise")])
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]


# ------------------------------------------------------------------------------ refusals
class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _assert_refused(path: Path, fragment: str = "") -> None:
    with pytest.raises(FileFormatError) as info:
        load_model(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    assert fragment in msg
    assert "\n" not in msg


def test_file_with_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "x": _Evil(marker)}, path)
    _assert_refused(path, "refused")
    assert not marker.exists()


def _saved(tmp_path: Path, students) -> tuple[Path, dict]:
    path = tmp_path / "student.pt"
    save_model(path, *students[("cnn", "sparse")])
    return path, torch.load(path, weights_only=True)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_other_format_version(tmp_path, students, version):
    path, blob = _saved(tmp_path, students)
    torch.save({**blob, "format_version": version}, path)
    _assert_refused(path, "format version")


def test_not_an_alphaprune_file(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"a": 1}, path)
    _assert_refused(path, "not an alphaprune model file")
    torch.save(torch.zeros(3), path)
    _assert_refused(path, "not an alphaprune model file")


def test_truncated_file(tmp_path, students):
    path, _ = _saved(tmp_path, students)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    _assert_refused(path, "not a readable model file")


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "model.pt"
    path.write_text("hello")
    _assert_refused(path, "not a readable model file")


def test_missing_file(tmp_path):
    _assert_refused(tmp_path / "missing.pt", "no such model file")


def _drop_recipe(blob):
    del blob["recipe"]


def _bad_json_recipe(blob):
    blob["recipe"] = "{not json"


def _unknown_model(blob):
    recipe = json.loads(blob["recipe"])
    recipe["model"]["name"] = "resnet21"
    blob["recipe"] = json.dumps(recipe)


def _missing_weight(blob):
    blob["state_dict"].pop(next(iter(blob["state_dict"])))


def _wrong_shape(blob):
    key = next(k for k, v in blob["state_dict"].items() if v.ndim == 4)
    blob["state_dict"][key] = blob["state_dict"][key][:1]


def _short_sparse_values(blob):
    key = next(k for k in blob["state_dict"] if k.endswith("_values"))
    blob["state_dict"][key] = blob["state_dict"][key][:-1]


@pytest.mark.parametrize(
    "change",
    [
        _drop_recipe,
        _bad_json_recipe,
        _unknown_model,
        _missing_weight,
        _wrong_shape,
        _short_sparse_values,
    ],
    ids=[
        "no-recipe",
        "bad-json-recipe",
        "unknown-model",
        "missing-weight",
        "wrong-shape",
        "short-sparse-values",
    ],
)
def test_alphaprune_file_with_corrupt_content(tmp_path, students, change):
    """A file of the right format and version whose recipe or weights were damaged is still a
    bad model file: one FileFormatError naming it, not a KeyError / JSONDecodeError /
    multi-line RuntimeError from deep inside loading."""
    path, blob = _saved(tmp_path, students)
    change(blob)
    torch.save(blob, path)
    _assert_refused(path)
