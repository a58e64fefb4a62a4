"""Least-squares init: exact where the original is representable by the branch, and never worse
on the calibration data than the weight-space (SVD) init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alphaprune import blend, lsq
from alphaprune.branches.kinds import build_branch
from alphaprune.models import build_model
from alphaprune.pipeline.params.recipe import PruneConfig
from alphaprune.pipeline.stages.prune import make_student


def _fit(layer, kind, size, x):
    branch = build_branch(layer, kind, size)
    model = nn.Sequential(layer)
    lsq.fit(model, {"0": (layer, branch)}, [x[: len(x) // 2], x[len(x) // 2 :]])  # two chunks
    return branch


@pytest.mark.parametrize("groups", [1, 2, 4])
@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 1), (1, 0)])
def test_pointwise_recovers_a_centre_tap_conv_exactly(groups, stride, padding):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, stride=stride, padding=padding, groups=groups)
    with torch.no_grad():  # only the centre tap is non-zero: a 1×1 conv can express it
        centre = conv.weight[:, :, 1, 1].clone()
        conv.weight.zero_()
        conv.weight[:, :, 1, 1] = centre
    branch = _fit(conv, "pointwise", None, torch.randn(64, 4, 9, 9))
    x = torch.randn(8, 4, 11, 11)
    torch.testing.assert_close(branch(x), conv(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_lowrank_recovers_a_low_rank_layer_exactly(bias):
    torch.manual_seed(0)
    layer = nn.Linear(20, 12, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(12, 3) @ torch.randn(3, 20))
    branch = _fit(layer, "lowrank", 3, torch.randn(500, 20))
    x = torch.randn(16, 20)
    torch.testing.assert_close(branch(x), layer(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("bias", [True, False])
def test_dwsep_recovers_a_depthwise_separable_conv_exactly(bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=bias)
    with torch.no_grad():  # every (out, in) slice a multiple of the input channel's filter
        conv.weight.copy_(torch.randn(6, 4, 1, 1) * torch.randn(1, 4, 3, 3))
    branch = _fit(conv, "dwsep", None, torch.randn(64, 4, 9, 9))
    x = torch.randn(8, 4, 11, 11)
    torch.testing.assert_close(branch(x), conv(x), atol=1e-4, rtol=1e-4)


def _fit_and_pretrained(kind, size):
    """A conv, anisotropic inputs (most channels nearly constant, so a weight-space fit wastes
    capacity on them), its output, and the branch fitted by lsq and by the pretrained init."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, 3, padding=1)
    x = torch.randn(128, 6, 8, 8) * torch.tensor([3.0, 2.0, 0.05, 0.05, 0.05, 0.05]).view(
        1, 6, 1, 1
    )
    svd = build_branch(conv, kind, size)
    svd.init_pretrained(conv)
    return x, conv(x).detach(), _fit(conv, kind, size, x), svd


def test_dwsep_fit_is_no_worse_than_its_pretrained_init_on_the_data():
    x, target, fitted, svd = _fit_and_pretrained("dwsep", None)
    # the same depthwise filters; the 1x1 conv is the least-squares one on this data
    torch.testing.assert_close(fitted.depthwise.weight, svd.depthwise.weight)
    assert (fitted(x) - target).norm() < (svd(x) - target).norm()


def test_lowrank_fit_beats_svd_on_the_data():
    x, target, fitted, svd = _fit_and_pretrained("lowrank", 2)
    err_fit = (fitted(x) - target).norm()
    err_svd = (svd(x) - target).norm()
    # reduced-rank regression is the best rank-2 map on this data; the SVD is one such map
    assert err_fit < 0.95 * err_svd, (err_fit, err_svd)


def test_lsq_student_starts_closer_to_the_teacher():
    torch.manual_seed(0)
    teacher = build_model("resnet20", 10).eval()
    x = torch.randn(64, 3, 32, 32)
    y = teacher(x).detach()
    errors = {}
    for init in ("random", "pretrained", "lsq"):
        torch.manual_seed(0)
        student, _ = make_student(teacher, PruneConfig(init=init), x[:2], [x])
        blend.set_alpha(student, 0.0)
        errors[init] = (student.eval()(x).detach() - y).norm().item()
    assert errors["lsq"] < errors["pretrained"] < errors["random"], errors
