"""The blend: the definition y = α·original(x) + (1−α)·branch(x), one α for all, collapse,
what trains, frozen BatchNorm statistics, and no recompilation when α changes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from alphaprune import blend
from alphaprune.branches import build_branch
from alphaprune.budget import allocate
from alphaprune.models import build_model


def _blended(kind="pointwise", name="resnet20"):
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    x = torch.randn(4, 3, 32, 32)
    plan = allocate(model, kind, 0.65, x[:2])
    branches = {lp.name: build_branch(model.get_submodule(lp.name), lp.branch, lp.size,
                                      plan.masks.get(lp.name)) for lp in plan.layers}  # fmt: skip
    return blend.insert(model, branches), x


@pytest.mark.parametrize("kind", ["pointwise", "lowrank", "sparse"])
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
