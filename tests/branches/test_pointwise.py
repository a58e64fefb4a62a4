"""`pointwise` branches: the output shape for every conv geometry, the centre tap, the
equivalent kernel the blend relies on, and the pretrained init."""

from __future__ import annotations

import pytest
import torch
from branch_geometries import GEOMETRIES
from torch import nn

from alphaprune.branches.kinds import build_branch
from alphaprune.branches.pointwise import PointwiseConv


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("k,s,p,d,g", GEOMETRIES)
def test_pointwise_matches_original_shape_and_centre_tap(k, s, p, d, g):
    conv = nn.Conv2d(4, 6, k, stride=s, padding=p, dilation=d, groups=g)
    branch = PointwiseConv(conv)
    for h, w in [(13, 13), (12, 15)]:
        x = torch.randn(2, 4, h, w)
        expected = conv(x).shape
        y = branch(x)
        assert y.shape == expected
        # the branch is the k×k conv whose kernel is zero except at the centre tap
        via_kernel = conv._conv_forward(x, branch.equivalent_weight(), branch.bias)
        torch.testing.assert_close(y, via_kernel, atol=1e-5, rtol=1e-5)


def test_pointwise_reads_the_centre_tap():
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    branch = PointwiseConv(conv)
    with torch.no_grad():
        branch.conv.weight.fill_(2.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(branch(x), 2 * x)
    kernel = branch.equivalent_weight()[0, 0]
    assert kernel[1, 1] == 2 and kernel.sum() == 2


def test_pretrained_pointwise_sums_the_taps():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    branch = build_branch(conv, "pointwise", None)
    branch.init_pretrained(conv)
    torch.testing.assert_close(branch.conv.weight[:, :, 0, 0], conv.weight.sum(dim=(2, 3)))
    torch.testing.assert_close(branch.conv.bias, conv.bias)
    # on a spatially constant input a conv sees only the summed kernel: exact away from borders
    x = torch.ones(1, 3, 7, 7)
    torch.testing.assert_close(branch(x)[..., 1:-1, 1:-1], conv(x)[..., 1:-1, 1:-1])
