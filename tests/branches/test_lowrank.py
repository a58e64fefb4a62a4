"""`lowrank` branches: the equivalent kernel of a rank-r pair, and the truncated SVD as its
pretrained init."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alphaprune.branches.kinds import build_branch
from alphaprune.branches.lowrank import LowRank


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
