"""`channels` branches: a reader of removed channels with those input columns zeroed; its
equivalent kernel, its count, and a least-squares refit on the kept inputs."""

from __future__ import annotations

import pytest
import torch
from branch_geometries import GEOMETRIES
from torch import nn

from alphaprune import lsq
from alphaprune.branches.channels import Channels


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("k,s,p,d,g", [geo for geo in GEOMETRIES if geo[4] == 1])
def test_the_branch_is_the_layer_without_the_dropped_inputs(k, s, p, d, g):
    conv = nn.Conv2d(4, 6, k, stride=s, padding=p, dilation=d)
    keep = torch.tensor([True, False, True, False])
    branch = Channels(conv, keep)
    x = torch.randn(2, 4, 13, 12)
    cut = x.clone()
    cut[:, ~keep] = 0
    torch.testing.assert_close(branch(x), conv(cut), atol=1e-5, rtol=1e-5)  # dropped: unread
    via_kernel = conv._conv_forward(x, branch.equivalent_weight(), branch.bias)
    torch.testing.assert_close(branch(x), via_kernel, atol=1e-5, rtol=1e-5)
    assert branch.num_params() == 6 * 2 * k * k + 6


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize(
    "layer",
    [
        nn.Conv2d(5, 7, 3, padding=1),
        nn.Conv2d(5, 7, 3, stride=2, padding="valid", dilation=2),
        nn.Conv2d(5, 7, 3, padding="same", bias=False),
        nn.Linear(5, 7),
    ],
)
def test_least_squares_recovers_a_layer_that_reads_only_the_kept_inputs(layer):
    keep = torch.tensor([True, True, False, True, False])
    with torch.no_grad():
        layer.weight[:, ~keep] = 0  # the teacher's layer already ignores the dropped inputs
    branch = Channels(layer, keep)
    with torch.no_grad():
        branch.layer.weight.normal_()
    x = torch.randn(64, 5, 9, 9) if isinstance(layer, nn.Conv2d) else torch.randn(64, 5)
    lsq.fit(layer, {"": (layer, branch)}, [x])
    torch.testing.assert_close(branch.equivalent_weight(), layer.weight, atol=1e-4, rtol=1e-4)


def test_keep_has_one_entry_per_input():
    with pytest.raises(ValueError, match="one entry per input"):
        Channels(nn.Linear(4, 2), torch.ones(3, dtype=torch.bool))
