"""The allocator, and the must-show matrix: for every branch kind on five architectures, the
budget is met, the collapsed student has exactly the planned size, equals the α = 0 blend, and
survives a save/load round trip."""

from __future__ import annotations

import math

import pytest
import torch

from alphaprune import blend
from alphaprune.branches.base import count_params
from alphaprune.branches.kinds import build_branch
from alphaprune.budget.allocator import allocate
from alphaprune.budget.plan import BudgetError, candidate_layers
from alphaprune.costs import count_macs
from alphaprune.errors import UnknownNameError
from alphaprune.loading import load_model
from alphaprune.modelfile import recipe_for, save_model
from alphaprune.models import build_model

MODELS = {
    "cnn": (1, 8, 8),
    "vgg16": (3, 32, 32),
    "resnet20": (3, 32, 32),
    "tv:resnet18": (3, 32, 32),
    "tv:mobilenet_v2": (3, 32, 32),
}
KINDS = ["pointwise", "dwsep", "lowrank", "sparse"]


def _model(name):
    c, h, _ = MODELS[name]
    torch.manual_seed(0)
    return build_model(name, 10, in_channels=c, image_size=h).eval()


def _example(name, n=2):
    return torch.randn(n, *MODELS[name], generator=torch.Generator().manual_seed(1))


def _student(model, plan):
    branches = {
        lp.name: build_branch(
            model.get_submodule(lp.name), lp.branch, lp.size, plan.masks.get(lp.name)
        )
        for lp in plan.layers
    }
    return blend.insert(model, branches)


def _assert_close_to_target(plan):
    need = math.ceil(plan.amount * plan.teacher_params)
    removed = plan.teacher_params - plan.student_params
    assert removed >= need
    if plan.kind in ("lowrank", "sparse"):
        assert plan.achieved - plan.amount <= 0.005
    else:  # pointwise, dwsep: as close as whole layers allow — no chosen swap can be undone
        for lp in plan.layers:
            if lp.branch == plan.kind:
                assert removed - (lp.params_before - lp.params_after) < need, lp.name


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(MODELS))
def test_budget_collapse_and_round_trip(name, kind, tmp_path):
    model = _model(name)
    x = _example(name, 4)
    plan = allocate(model, kind, 0.65, x[:2])
    _assert_close_to_target(plan)

    student = _student(model, plan)
    # Train BatchNorm statistics away from their init so that the comparison is not trivial.
    for m in student.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    blend.set_alpha(student, 0.0)
    with torch.no_grad():
        blended = student(x)
        blend.collapse(student)
        collapsed = student(x)
    assert not any(True for _ in blend.blends(student))
    scale = blended.abs().max()
    assert torch.allclose(collapsed, blended, atol=1e-5 * scale, rtol=1e-4)

    params, dense = count_params(student), count_params(student, dense=True)
    assert params == plan.student_params
    assert count_macs(student, x) == plan.student_macs  # a sparse one's: dense
    if kind != "sparse":
        assert dense == params == count_params(student, dense=True)

    c, h, w = MODELS[name]
    recipe = recipe_for(name, 10, (c, h, w), [0.0] * c, [1.0] * c, [str(i) for i in range(10)])
    recipe["layers"] = [
        {"name": lp.name, "branch": lp.branch, "size": lp.size} for lp in plan.layers
    ]
    save_model(tmp_path / "student.pt", student, recipe)
    loaded, _ = load_model(tmp_path / "student.pt")
    with torch.no_grad():
        assert torch.allclose(loaded(x), collapsed, atol=1e-6 * scale, rtol=1e-5)
    assert (count_params(loaded), count_params(loaded, dense=True)) == (params, dense)


@pytest.mark.parametrize("kind", KINDS)
def test_achieved_reported_and_monotone_in_amount(kind):
    model = _model("resnet20")
    x = _example("resnet20")
    achieved = [allocate(model, kind, a, x).achieved for a in (0.3, 0.5, 0.65, 0.8)]
    assert achieved == sorted(achieved)
    assert all(a >= t for a, t in zip(achieved, (0.3, 0.5, 0.65, 0.8), strict=True))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["cnn", "resnet20", "tv:mobilenet_v2"])
def test_small_amounts_are_still_met(name, kind):
    """achieved >= amount at every amount, including small ones where a single layer's branch
    could overshoot (regression: layers whose best rank saved little were dropped uncounted)."""
    model, x = _model(name), _example(name)
    for amount in (0.01, 0.02, 0.05, 0.1, 0.2, 0.4):
        plan = allocate(model, kind, amount, x)
        assert plan.teacher_params - plan.student_params >= math.ceil(amount * plan.teacher_params)
        assert sum(lp.params_before - lp.params_after for lp in plan.layers) == (
            plan.teacher_params - plan.student_params
        )


def test_exclude_pattern_matching_nothing_is_an_error():
    with pytest.raises(BudgetError, match=r"'layer9\.\*' matches no Conv2d/Linear layer"):
        allocate(
            _model("resnet20"), "lowrank", 0.3, _example("resnet20"), exclude=["conv1", "layer9.*"]
        )


def test_dwsep_replaces_ungrouped_spatial_convs_at_about_the_pointwise_cost():
    model, x = _model("resnet20"), _example("resnet20")
    dwsep = allocate(model, "dwsep", 0.65, x)
    pointwise = allocate(model, "pointwise", 0.65, x)
    assert {lp.branch for lp in dwsep.layers} == {"dwsep"}
    assert {lp.name for lp in dwsep.layers} == {lp.name for lp in pointwise.layers}
    for a, b in zip(dwsep.layers, pointwise.layers, strict=True):
        layer = model.get_submodule(a.name)
        # the depthwise filters cost in_channels·k·k on top of the 1x1 conv
        assert a.params_after - b.params_after == layer.in_channels * 9
    # MobileNet's 3x3 convs are depthwise already (grouped): only its linear maps can change
    mobilenet = allocate(_model("tv:mobilenet_v2"), "dwsep", 0.65, _example("tv:mobilenet_v2"))
    assert {lp.branch for lp in mobilenet.layers} <= {"dwsep", "lowrank"}
    mnet = _model("tv:mobilenet_v2")
    assert all(
        mnet.get_submodule(lp.name).groups == 1 for lp in mobilenet.layers if lp.branch == "dwsep"
    )


def test_pointwise_prefers_spatial_convs_then_low_rank_linear_maps():
    vgg = allocate(_model("vgg16"), "pointwise", 0.65, _example("vgg16"))
    assert {lp.branch for lp in vgg.layers} == {"pointwise"}
    # Largest saving first: the chosen convs are the biggest ones.
    mobilenet = allocate(_model("tv:mobilenet_v2"), "pointwise", 0.65, _example("tv:mobilenet_v2"))
    kinds = {lp.branch for lp in mobilenet.layers}
    assert kinds == {"pointwise", "lowrank"}  # its 3×3 convs are depthwise and tiny
    model = _model("tv:mobilenet_v2")
    for lp in mobilenet.layers:
        layer = model.get_submodule(lp.name)
        if lp.branch == "lowrank":
            assert layer.kernel_size == (1, 1) or isinstance(layer, torch.nn.Linear)


def test_pointwise_largest_saving_first():
    model = _model("vgg16")
    plan = allocate(model, "pointwise", 0.3, _example("vgg16"))
    chosen = {lp.name for lp in plan.layers}
    savings = {}
    layers, _ = candidate_layers(model, None, _example("vgg16"))
    for name, layer in layers:
        savings[name] = layer.weight.numel() * 8 // 9
    skipped_bigger = [
        n for n in savings if n not in chosen and savings[n] > min(savings[c] for c in chosen)
    ]
    # Only the last pick may be smaller than a skipped layer (it is the smallest that closes
    # the gap), so at most one chosen layer is smaller than any skipped one.
    smaller_chosen = [c for c in chosen if any(savings[c] < savings[s] for s in skipped_bigger)]
    assert len(smaller_chosen) <= 1


def test_default_exclusion_is_first_conv_and_classifier():
    model = _model("resnet20")
    layers, excluded = candidate_layers(model, None, _example("resnet20"))
    assert excluded == ["conv1", "linear"]
    assert "conv1" not in {n for n, _ in layers}


def test_exclude_patterns():
    model = _model("resnet20")
    plan = allocate(
        model, "lowrank", 0.15, _example("resnet20"), exclude=["conv1", "linear", "layer3.*"]
    )
    assert plan.layers and not any(lp.name.startswith("layer3") for lp in plan.layers)
    assert "layer3.0.conv1" in plan.excluded


@pytest.mark.parametrize("kind", KINDS)
def test_unreachable_target_names_the_largest_reachable_fraction(kind):
    model = _model("resnet20")
    with pytest.raises(BudgetError, match=r"unreachable.*at most 0\.\d+") as err:
        allocate(model, kind, 0.9, _example("resnet20"), exclude=["conv1", "linear", "layer3.*"])
    most = float(str(err.value).split("at most ")[1].split()[0])
    assert 0 < most < 0.9


def test_bad_amount_and_kind():
    model = _model("cnn")
    with pytest.raises(BudgetError, match="amount"):
        allocate(model, "pointwise", 1.2, _example("cnn"))
    with pytest.raises(UnknownNameError, match="unknown branch kind"):
        allocate(model, "magic", 0.5, _example("cnn"))


def test_plan_to_dict_is_consistent():
    plan = allocate(_model("resnet20"), "lowrank", 0.65, _example("resnet20"))
    d = plan.to_dict()
    removed = sum(lp["params_before"] - lp["params_after"] for lp in d["layers"])
    assert d["student_params"] == d["teacher_params"] - removed
    assert d["achieved"] == pytest.approx(removed / d["teacher_params"])


@pytest.mark.parametrize("kind", ["pointwise", "dwsep", "lowrank"])
@pytest.mark.parametrize("name", ["cnn", "resnet20", "tv:mobilenet_v2"])
def test_a_mac_target_is_met_and_counted_as_the_collapsed_student_runs(name, kind):
    model, x = _model(name), _example(name)
    plan = allocate(model, kind, 0.4, x, target="macs")
    assert plan.target == "macs" and plan.to_dict()["macs_achieved"] == plan.macs_achieved
    assert plan.teacher_macs - plan.student_macs >= math.ceil(0.4 * plan.teacher_macs)
    if kind == "lowrank":  # ranks are fine-grained: close to the target
        assert plan.macs_achieved - 0.4 <= 0.005
    student = _student(model, plan)
    blend.set_alpha(student, 0.0)
    blend.collapse(student)
    assert count_macs(student, x) == plan.student_macs
    assert count_params(student) == plan.student_params  # both fractions, either target


def test_a_parameter_target_reports_the_macs_too():
    model, x = _model("resnet20"), _example("resnet20")
    plan = allocate(model, "lowrank", 0.65, x)
    assert plan.target == "params" and plan.teacher_macs == count_macs(model, x)
    student = _student(model, plan)
    blend.set_alpha(student, 0.0)
    blend.collapse(student)
    assert count_macs(student, x) == plan.student_macs
    # a mask does not make a layer run faster: a sparse plan keeps every MAC
    sparse = allocate(_model("resnet20"), "sparse", 0.65, x)
    assert sparse.student_macs == sparse.teacher_macs and sparse.macs_achieved == 0


def test_sparse_cannot_target_macs():
    with pytest.raises(BudgetError, match="runs densely"):
        allocate(_model("cnn"), "sparse", 0.5, _example("cnn"), target="macs")
