"""The blend: the definition y = α·original(x) + (1−α)·branch(x), one α for all, collapse,
what trains, frozen BatchNorm statistics, and no recompilation when α changes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from alphaprune import blend
from alphaprune.branches.kinds import build_branch
from alphaprune.budget.allocator import allocate
from alphaprune.models import build_model


def _blended(kind="pointwise", name="resnet20"):
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    x = torch.randn(4, 3, 32, 32)
    plan = allocate(model, kind, 0.65, x[:2])
    branches = {
        lp.name: build_branch(
            model.get_submodule(lp.name), lp.branch, lp.size, plan.masks.get(lp.name)
        )
        for lp in plan.layers
    }
    return blend.insert(model, branches), x


@pytest.mark.parametrize("kind", ["pointwise", "dwsep", "lowrank", "sparse"])
@pytest.mark.parametrize("alpha", [1.0, 0.7, 0.25, 0.0])
def test_blend_is_the_convex_combination_of_both_outputs(kind, alpha):
    model, x = _blended(kind)
    blend.set_alpha(model, alpha)
    _, b = next(blend.blends(model))
    h = torch.randn(2, b.original.in_channels, 16, 16)
    expected = alpha * b.original(h) + (1 - alpha) * b.branch(h)
    torch.testing.assert_close(b(h), expected, atol=1e-5, rtol=1e-4)


def test_one_alpha_for_the_whole_network():
    model, _ = _blended()
    blend.set_alpha(model, 0.3)
    alphas = [float(b.alpha) for _, b in blend.blends(model)]
    assert len(alphas) > 1 and alphas == pytest.approx([0.3] * len(alphas))


def test_alpha_one_is_the_teacher():
    torch.manual_seed(0)
    teacher = build_model("resnet20", 10).eval()
    model, x = _blended()
    blend.set_alpha(model, 1.0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), teacher(x), atol=1e-5, rtol=1e-4)


def test_alpha_is_saved_with_the_state():
    model, _ = _blended()
    blend.set_alpha(model, 0.42)
    state = model.state_dict()
    other, _ = _blended()
    other.load_state_dict(state)
    assert all(float(b.alpha) == pytest.approx(0.42) for _, b in blend.blends(other))


@pytest.mark.parametrize(
    "mode,trains_originals,trains_survivors",
    [("branches", False, False), ("student", False, True), ("all", True, True)],
)
def test_set_trainable(mode, trains_originals, trains_survivors):
    model, _ = _blended()
    trainable = {id(p) for p in blend.set_trainable(model, mode)}
    for _, b in blend.blends(model):
        assert all(id(p) in trainable for p in b.branch.parameters())
        assert all((id(p) in trainable) == trains_originals for p in b.original.parameters())
    assert (id(model.linear.weight) in trainable) == trains_survivors
    assert (id(model.bn1.weight) in trainable) == trains_survivors


def test_frozen_batchnorm_keeps_teacher_statistics():
    model, x = _blended()
    blend.set_trainable(model, "branches")
    before = copy.deepcopy(model.state_dict())
    model.train()
    for m in blend.frozen_norms(model, "branches"):
        m.eval()
    model(x).sum().backward()
    after = model.state_dict()
    for key in before:
        if "running" in key:
            assert torch.equal(before[key], after[key]), key
    assert blend.frozen_norms(model, "student") == []


def test_collapse_removes_originals():
    model, x = _blended("lowrank")
    n_blend = sum(1 for _ in blend.blends(model))
    blend.set_alpha(model, 0.0)
    with torch.no_grad():
        y0 = model(x)
    blend.collapse(model)
    assert not any(isinstance(m, blend.Blend) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(x), y0, atol=1e-5, rtol=1e-4)
    assert n_blend > 0


def test_changing_alpha_does_not_recompile():
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    model, x = _blended()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter)
    outs = []
    for alpha in (0.9, 0.5, 0.1):
        blend.set_alpha(model, alpha)
        with torch.no_grad():
            outs.append(compiled(x))
    assert counter.frame_count == 1
    assert not torch.allclose(outs[0], outs[2])  # α really changed the computation


def test_blend_handles_missing_biases():
    layer = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    b = blend.Blend(layer, build_branch(layer, "pointwise", None))
    b.alpha.fill_(0.5)
    x = torch.randn(1, 3, 5, 5)
    torch.testing.assert_close(b(x), 0.5 * layer(x) + 0.5 * b.branch(x))


# ------------------------------------------------------------------ layer-wise distillation
def _one_blend(alpha: float) -> blend.Blend:
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    branch = build_branch(conv, "pointwise", None)
    with torch.no_grad():
        conv.weight.fill_(1.0)  # a 3×3 box sum
        branch.conv.weight.fill_(2.0)  # twice the centre pixel
    model = blend.insert(nn.Sequential(conv), {"0": branch})
    blend.set_alpha(model, alpha)
    return model


def test_distill_term_by_hand():
    model = _one_blend(0.25)
    blend.set_distill(model, True)
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0  # one lit pixel: the box sum is 1 everywhere, the branch 2 at the centre
    y = model(x)
    target = torch.ones(1, 1, 3, 3)
    branch = torch.zeros(1, 1, 3, 3)
    branch[0, 0, 1, 1] = 2.0
    torch.testing.assert_close(y, 0.25 * target + 0.75 * branch)  # the same blend
    # squared errors: 1 at the 8 border pixels, 1 at the centre -> mean 1; mean square of the
    # target 1: the relative error is 1
    term = blend.distill_loss(model)
    torch.testing.assert_close(term, torch.tensor(1.0))
    assert blend.distill_loss(model) is None  # taken once


def test_distill_gradient_reaches_only_the_branch_through_the_term():
    model = _one_blend(0.5)
    blend.set_distill(model, True)
    blend.set_trainable(model, "all")
    model(torch.randn(2, 1, 5, 5))
    blend.distill_loss(model).backward()
    b = model[0]
    assert b.branch.conv.weight.grad.abs().sum() > 0
    assert b.original.weight.grad is None  # the original's output is the target, detached


def test_distill_is_only_computed_in_training_and_matches_the_fused_blend():
    model = _one_blend(0.3)
    x = torch.randn(2, 1, 6, 6)
    fused = model(x)
    blend.set_distill(model, True)
    torch.testing.assert_close(model(x), fused, atol=1e-6, rtol=1e-5)
    assert blend.distill_loss(model) is not None
    model.eval()
    model(x)
    assert blend.distill_loss(model) is None  # evaluation keeps the fused path
