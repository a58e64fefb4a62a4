"""Allocation `blocks` (`alphaprune.budget.blocks`): whole residual blocks dropped until the
parameters or MACs are met, the plan's counts those of the dropped model, the least damaging
block first, and the errors a user can meet."""

from __future__ import annotations

import copy

import pytest
import torch

from alphaprune.blocks import BlockError, drop
from alphaprune.branches.base import count_params
from alphaprune.budget.allocator import allocate
from alphaprune.budget.plan import BudgetError
from alphaprune.costs import count_macs
from alphaprune.models import build_model


def _resnet20() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10, in_channels=3, image_size=32)
    model.train()(torch.randn(32, 3, 32, 32))
    return model.eval()


X = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize(("target", "amount"), [("params", 0.3), ("macs", 0.3), ("macs", 0.5)])
def test_the_budget_is_met_and_counted_as_the_dropped_model_counts(target, amount):
    model = _resnet20()
    plan = allocate(model, "blocks", amount, X, target=target)
    dropped = drop(copy.deepcopy(model), [lp.name for lp in plan.layers])
    assert plan.student_params == count_params(dropped)
    # the plan counts convs and linears (weights x positions), as every kind's plan does; the
    # CIFAR ResNets' other MACs (BatchNorm, the option-A map) are not counted by the flop counter
    assert plan.student_macs == count_macs(dropped, X)
    assert (plan.achieved if target == "params" else plan.macs_achieved) >= amount
    # whole blocks: a plan names blocks, not layers with a size
    assert all(lp.branch == "blocks" and lp.size is None for lp in plan.layers)


def test_a_block_that_changes_nothing_goes_first():
    """layer3.2's residual zeroed (its last BatchNorm's scale and shift): dropping it moves no
    logit, so it is chosen first though a stage-1 block saves far fewer parameters per
    unit of damage than nothing."""
    model = _resnet20()
    bn = model.get_submodule("layer3.2").bn2
    with torch.no_grad():
        bn.weight.zero_()
        bn.bias.zero_()
    plan = allocate(model, "blocks", 0.2, X)
    assert [lp.name for lp in plan.layers] == ["layer3.2"]


def test_what_cannot_be_met_is_refused_with_the_reason():
    model = _resnet20()
    with pytest.raises(BudgetError, match=r"unreachable with branch 'blocks'.* at most 0\.\d+"):
        allocate(model, "blocks", 0.5, X, exclude=["layer3.*"])
    refused = "target 'latency' is planned for branches 'channels' and 'blocks\\+channels' only"
    with pytest.raises(BudgetError, match=refused + ", not 'blocks'"):
        allocate(model, "blocks", 0.3, X, target="latency")
    with pytest.raises(BlockError, match="has no residual blocks"):
        allocate(
            build_model("cnn", num_classes=10, in_channels=1, image_size=8),
            "blocks",
            0.3,
            torch.randn(2, 1, 8, 8),
        )


def test_excluded_blocks_are_kept():
    model = _resnet20()
    plan = allocate(model, "blocks", 0.2, X, exclude=["layer3.*"])
    assert plan.layers and not any(lp.name.startswith("layer3") for lp in plan.layers)
    assert "layer3.0" in plan.excluded


def test_a_mistyped_exclude_is_refused():
    with pytest.raises(BudgetError, match=r"exclude: 'layr3\.\*' matches no block, no layer"):
        allocate(_resnet20(), "blocks", 0.2, X, exclude=["layr3.*"])


@pytest.mark.parametrize("kind", ["blocks", "blocks+channels"])
def test_a_stage_named_as_a_whole_is_refused_with_its_blocks_pattern(kind):
    """`layer1` is a container of blocks, neither a block nor a layer: it kept nothing (every
    block of the stage could still go), so it is refused, naming the patterns that keep them."""
    with pytest.raises(BudgetError, match=r"'layer1' holds blocks: 'layer1\.\*' keeps them"):
        allocate(_resnet20(), kind, 0.2, X, exclude=["linear", "layer1"])
    # the patterns it names are taken (test_excluded_blocks_are_kept: they keep the blocks)
