"""The registry of branch kinds: every kind's cost is what a built branch counts, and an unknown
kind is named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alphaprune.branches.kinds import BRANCHES, branch_params, build_branch


@pytest.mark.parametrize("kind", list(BRANCHES))
@pytest.mark.parametrize("layer", [nn.Conv2d(8, 16, 3, padding=1), nn.Conv2d(8, 16, 3, bias=False)])
def test_costs_equal_built_parameter_counts(kind, layer):
    size = {"pointwise": None, "dwsep": None, "lowrank": 3, "sparse": 100, "channels": 5}[kind]
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
