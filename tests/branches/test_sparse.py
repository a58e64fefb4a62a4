"""`sparse` branches: the mask, the parameters it keeps, and the masked original as the
pretrained init."""

from __future__ import annotations

import torch
from torch import nn

from alphaprune.branches.base import count_params
from alphaprune.branches.kinds import build_branch
from alphaprune.branches.sparse import Sparse


def test_sparse_masks_weights_and_counts_kept_ones():
    layer = nn.Conv2d(3, 4, 3)
    mask = (torch.rand_like(layer.weight) > 0.7).float()
    branch = Sparse(layer, mask)
    assert branch.num_params() == int(mask.sum()) + 4
    torch.testing.assert_close(branch.equivalent_weight(), layer.weight * mask)
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(branch(x), layer._conv_forward(x, layer.weight * mask, layer.bias))


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
