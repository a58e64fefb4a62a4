"""`dwsep` branches: shapes for every geometry and padding mode, the equivalent kernel, and the
best rank-one fit as the pretrained init."""

from __future__ import annotations

import pytest
import torch
from branch_geometries import GEOMETRIES
from torch import nn

from alphaprune.branches.dwsep import DepthwiseSeparable
from alphaprune.branches.kinds import build_branch


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(
    "k,s,p,d,g,padding_mode",
    [
        (*geo, mode)
        for geo in GEOMETRIES
        for mode in ("zeros", "reflect")
        if geo[4] == 1 and (mode == "zeros" or geo[2] in (0, 1, "valid"))
    ],
)
def test_dwsep_matches_original_shape_and_its_equivalent_kernel(k, s, p, d, g, padding_mode):
    conv = nn.Conv2d(4, 6, k, stride=s, padding=p, dilation=d, padding_mode=padding_mode)
    branch = DepthwiseSeparable(conv)
    for h, w in [(13, 13), (12, 15)]:
        x = torch.randn(2, 4, h, w)
        y = branch(x)
        assert y.shape == conv(x).shape
        via_kernel = conv._conv_forward(x, branch.equivalent_weight(), branch.bias)
        torch.testing.assert_close(y, via_kernel, atol=1e-5, rtol=1e-5)


def test_dwsep_kernel_slices_are_multiples_of_the_channel_filter():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    branch = DepthwiseSeparable(conv)
    w = branch.equivalent_weight()
    assert w.shape == conv.weight.shape
    for i in range(3):  # every output's slice for input i is a multiple of filter i: rank one
        assert torch.linalg.matrix_rank(w[:, i].flatten(1)) == 1
    assert branch.num_params() == 3 * 9 + 5 * 3 + 5


def test_dwsep_needs_an_ungrouped_conv():
    with pytest.raises(ValueError, match="ungrouped Conv2d"):
        DepthwiseSeparable(nn.Conv2d(4, 4, 3, groups=2))


def test_pretrained_dwsep_is_the_best_rank_one_fit_per_input_channel():
    conv = nn.Conv2d(6, 8, 3, padding=1)
    branch = build_branch(conv, "dwsep", None)
    branch.init_pretrained(conv)
    w = conv.weight.detach()
    # Eckart–Young on each input channel's (out, k·k) slice: the error left is the tail's norm
    tails = [torch.linalg.svdvals(w[:, i].flatten(1))[1:] for i in range(6)]
    err = (branch.equivalent_weight() - w).norm()
    torch.testing.assert_close(err, torch.cat(tails).norm(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(branch.bias, conv.bias)
    # and no other dwsep kernel is closer: a perturbed one is farther
    with torch.no_grad():
        branch.depthwise.weight.add_(0.01 * torch.randn_like(branch.depthwise.weight))
    assert (branch.equivalent_weight() - w).norm() > err
