"""Allocation `blocks` (`alphaprune.budget.blocks`): whole residual blocks dropped until the
parameters, MACs or the time a latency table predicts are met, the plan's counts those of the
dropped model, the least damaging block first, and the errors a user can meet."""

from __future__ import annotations

import copy

import pytest
import torch

from alphaprune.blocks import BlockError, drop
from alphaprune.branches.base import count_params
from alphaprune.budget.allocator import allocate
from alphaprune.budget.latency_table import LatencyTable, Layer
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
    with pytest.raises(BudgetError, match=r"exclude: 'layr3\.\*' matches no block or layer"):
        allocate(_resnet20(), "blocks", 0.2, X, exclude=["layr3.*"])


def _layer_table(model: torch.nn.Module) -> LatencyTable:
    """A stand-in table per layer of `model` at `X`'s shape: each layer timed alone at its MACs
    x 1e-6 ms (its teacher widths only), the teacher's whole time 1.25x its layers' sum."""
    from alphaprune.costs import layer_positions

    positions = layer_positions(model, X[:2])
    layers = []
    for name, where in positions.items():
        m = model.get_submodule(name)
        i, o = m.weight.shape[1], m.weight.shape[0]
        layers.append(Layer(name, i, o, {}, {}, {(i, o): 1e-6 * m.weight.numel() * where}))
    full = 1.25 * sum(layer.at(layer.inputs, layer.outputs) for layer in layers)
    return LatencyTable("stand-in", 64, 1, 8, full, {}, {}, layers=tuple(layers))


@pytest.mark.parametrize(("amount", "fixed"), [(0.3, 0.0), (0.5, 0.0), (0.4, 0.25)])
def test_a_latency_budget_drops_blocks_until_the_table_predicts_the_time_saved(amount, fixed):
    """A dropped block's layers no longer run: the student's predicted time is the table's
    prediction with their times taken out (the share `fixed` of the teacher's time stays),
    met, and each dropped block's saving recorded as its layers' share."""
    model = _resnet20()
    table = _layer_table(model)
    table.__dict__["fixed"] = fixed  # as a calibrated table's plans fit it (cached property)
    plan = allocate(model, "blocks", amount, X, target="latency", table=table)
    dropped = {lp.name for lp in plan.layers}
    layers_ms = {layer.name: layer.at(layer.inputs, layer.outputs) for layer in table.layers}
    kept = sum(ms for name, ms in layers_ms.items() if name.rsplit(".", 1)[0] not in dropped)
    ratio = kept / sum(layers_ms.values())
    expected = table.full_ms * (fixed + (1 - fixed) * ratio)
    assert plan.latency["student_ms"] == pytest.approx(expected, rel=1e-12)
    assert plan.latency["student_ms"] <= (1 - amount) * table.full_ms * (1 + 1e-12)
    assert set(plan.latency["blocks_ms"]) == dropped and plan.latency["ranking"] == "blocks"
    assert plan.target == "latency" and plan.to_dict()["latency"] == plan.latency


def test_a_latency_budget_for_blocks_needs_a_table_per_layer_of_this_model():
    model = _resnet20()
    with pytest.raises(BudgetError, match="needs a latency table"):
        allocate(model, "blocks", 0.3, X, target="latency")
    per_group = LatencyTable("stand-in", 64, 1, 8, 10.0, {"conv1": 16}, {"conv1": {8: 9.0}})
    with pytest.raises(BudgetError, match="needs a table per layer"):
        allocate(model, "blocks", 0.3, X, target="latency", table=per_group)
    other = _layer_table(build_model("resnet20", 10, in_channels=3, image_size=32))
    other = LatencyTable(**{**other.__dict__, "layers": other.layers[:5]})  # its first layers
    with pytest.raises(BudgetError, match="no timings for the layers layer1.2.conv1"):
        allocate(model, "blocks", 0.3, X, target="latency", table=other)
    with pytest.raises(BudgetError, match="unreachable with branch 'blocks': dropping every"):
        table = _layer_table(model)
        allocate(model, "blocks", 0.5, X, ["layer2.*", "layer3.*"], target="latency", table=table)
