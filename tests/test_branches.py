"""Branch modules: shapes for every conv geometry, the equivalent-kernel identity the blend
relies on, costs, and the pretrained inits."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from alphaprune.branches import (
    BRANCHES,
    DepthwiseSeparable,
    LowRank,
    PointwiseConv,
    Sparse,
    branch_params,
    build_branch,
    count_params,
)

GEOMETRIES = [
    (k, s, p, d, g)
    for k, s, p, d, g in itertools.product(
        [2, 3, 5], [1, 2], [0, 1, 2, "same", "valid"], [1, 2], [1, 2]
    )
    if not (p == "same" and s != 1)
]


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


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(5, 7, 3, stride=2, padding=1),
        nn.Conv2d(5, 7, 1),
        nn.Linear(12, 9),
        nn.Linear(12, 9, bias=False),
    ],
)
def test_lowrank_equivalent_weight(layer, rank):
    branch = LowRank(layer, rank)
    x = torch.randn(3, 5, 8, 8) if isinstance(layer, nn.Conv2d) else torch.randn(3, 12)
    w = branch.equivalent_weight()
    assert w.shape == layer.weight.shape
    assert torch.linalg.matrix_rank(w.flatten(1)) == rank
    ref = (
        layer._conv_forward(x, w, branch.bias)
        if isinstance(layer, nn.Conv2d)
        else nn.functional.linear(x, w, branch.bias)
    )
    torch.testing.assert_close(branch(x), ref, atol=1e-5, rtol=1e-5)


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


def test_sparse_masks_weights_and_counts_kept_ones():
    layer = nn.Conv2d(3, 4, 3)
    mask = (torch.rand_like(layer.weight) > 0.7).float()
    branch = Sparse(layer, mask)
    assert branch.num_params() == int(mask.sum()) + 4
    torch.testing.assert_close(branch.equivalent_weight(), layer.weight * mask)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(branch(x), layer._conv_forward(x, layer.weight * mask, layer.bias))


@pytest.mark.parametrize("kind", list(BRANCHES))
@pytest.mark.parametrize("layer", [nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(8, 16, 3, bias=False)])
def test_costs_equal_built_parameter_counts(kind, layer):
    size = {"pointwise": None, "dwsep": None, "lowrank": 3, "sparse": 100}[kind]
    mask = None
    if kind == "sparse":
        mask = torch.zeros_like(layer.weight).flatten()
        mask[:100] = 1
        mask = mask.view_as(layer.weight)
    branch = build_branch(layer, kind, size, mask)
    assert branch.num_params() == branch_params(layer, kind, size)
    assert branch.num_params() < sum(p.numel() for p in layer.parameters())


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown branch kind 'dense'"):
        build_branch(nn.Linear(3, 3), "dense", None)


def test_pretrained_pointwise_sums_the_taps():
    conv = nn.Conv2d(3, 5, 3, padding=1)
    branch = build_branch(conv, "pointwise", None)
    branch.init_pretrained(conv)
    torch.testing.assert_close(branch.conv.weight[:, :, 0, 0], conv.weight.sum(dim=(2, 3)))
    torch.testing.assert_close(branch.conv.bias, conv.bias)
    # on a spatially constant input a conv sees only the summed kernel: exact away from borders
    x = torch.ones(1, 3, 7, 7)
    torch.testing.assert_close(branch(x)[..., 1:-1, 1:-1], conv(x)[..., 1:-1, 1:-1])


def test_pretrained_lowrank_is_the_truncated_svd():
    conv = nn.Conv2d(6, 8, 3)
    s = torch.linalg.svdvals(conv.weight.detach().flatten(1))
    for rank in (1, 3, 6):
        branch = build_branch(conv, "lowrank", rank)
        branch.init_pretrained(conv)
        err = (branch.equivalent_weight() - conv.weight).flatten(1).norm()
        # Eckart–Young: the error of the best rank-r approximation is the tail's norm
        torch.testing.assert_close(err, s[rank:].norm(), atol=1e-5, rtol=1e-4)
        # balanced factors
        torch.testing.assert_close(
            branch.first.weight.norm(), branch.second.weight.norm(), rtol=1e-4, atol=1e-5
        )


def test_pretrained_sparse_is_the_masked_original():
    layer = nn.Linear(10, 4)
    mask = (layer.weight.abs() > layer.weight.abs().median()).float()
    branch = build_branch(layer, "sparse", int(mask.sum()), mask)
    assert not torch.equal(branch.equivalent_weight(), layer.weight * mask)  # random init
    branch.init_pretrained(layer)
    torch.testing.assert_close(branch.equivalent_weight(), layer.weight * mask)


def test_sparse_counts_kept_weights_and_dense_size():
    layer = nn.Linear(10, 4)
    mask = torch.zeros_like(layer.weight)
    mask[:, :3] = 1
    model = nn.Sequential(nn.Flatten(), Sparse(layer, mask))
    params, dense = count_params(model), count_params(model, dense=True)
    assert params == 12 + 4
    assert dense == 40 + 4  # weight_orig replaces weight; the mask is a buffer
