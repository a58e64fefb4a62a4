"""Allocation `blocks+channels` (`alphaprune.budget.blocks_channels`): blocks dropped and channels
removed in one student, the split between them chosen by how far the one-shot student moves the
logits; the plan's counts and predicted time those of the student built from it, its α = 0
blend that student, which saves, loads and exports."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from alphaprune import blend, channels
from alphaprune.blocks import drop
from alphaprune.branches.base import count_params
from alphaprune.budget.allocator import allocate
from alphaprune.budget.plan import BudgetError
from alphaprune.budget.table_views import named_as, without
from alphaprune.costs import count_macs
from alphaprune.models import build_model
from alphaprune.student import make_student
from stand_in_tables import MS_PER_MAC, stand_in_table

KIND = "blocks+channels"
X = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _resnet20(zeroed: tuple[str, ...] = ()) -> torch.nn.Module:
    """A ResNet-20 with BatchNorm statistics that are not (0, 1); the blocks `zeroed` have a
    residual of zero (their last BatchNorm's scale and shift), so dropping them changes
    nothing."""
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10, in_channels=3, image_size=32)
    model.train()(torch.randn(32, 3, 32, 32))
    with torch.no_grad():
        for name in zeroed:
            bn = model.get_submodule(name).bn2
            bn.weight.zero_()
            bn.bias.zero_()
    return model.eval()


def _student(teacher, plan) -> torch.nn.Module:
    """The plan's student built without the blend: the blocks dropped, the channels removed."""
    student = drop(copy.deepcopy(teacher), plan.dropped_blocks)
    channels.narrow(student, plan.removed, X[:2])
    return student.eval()


@pytest.mark.parametrize(("target", "amount"), [("params", 0.5), ("macs", 0.6)])
def test_the_budget_is_met_and_counted_as_the_student_counts(target, amount):
    teacher = _resnet20()
    plan = allocate(teacher, KIND, amount, X, ["linear"], round_to=8, target=target)
    student = _student(teacher, plan)
    assert plan.student_params == count_params(student)
    assert plan.student_macs == count_macs(student, X[:1])
    assert (plan.achieved if target == "params" else plan.macs_achieved) >= amount
    assert plan.kind == KIND and plan.dropped_blocks and plan.removed  # both, at these budgets
    # every split tried meets the same budget; the plan is the one that moved the logits least
    chosen = next(s for s in plan.splits if set(s["blocks"]) == set(plan.dropped_blocks))
    assert chosen["damage"] == min(s["damage"] for s in plan.splits)
    assert len({len(s["blocks"]) for s in plan.splits}) == len(plan.splits) > 2
    for root, removed in plan.removed.items():  # the channel widths kept in blocks of 8
        assert (student.get_submodule(root).weight.shape[0]) % 8 == 0 and removed


def test_blocks_that_change_nothing_are_dropped_before_channels_are_cut():
    """A block with a zero residual meets a budget of 10% of the MACs (each block does 11.6% of
    them): dropping it moves no logit, any channel cut does; the plan is that block alone."""
    teacher = _resnet20(zeroed=("layer2.2",))
    plan = allocate(teacher, KIND, 0.1, X, ["linear"], round_to=8, target="macs")
    assert plan.dropped_blocks == ["layer2.2"] and not plan.removed
    assert min(s["damage"] for s in plan.splits) == 0.0
    assert [s["blocks"] for s in plan.splits if not s["blocks"]]  # channels alone were tried


def test_channels_that_carry_nothing_are_cut_before_any_block_is_dropped():
    """Half the channels of every block's inner width produce zeros (their filters and
    BatchNorm zeroed): removing them moves the logits by float rounding only, dropping any
    block moves them far more; the plan cuts channels alone."""
    teacher = _resnet20()
    with torch.no_grad():
        for name, module in teacher.named_modules():
            if name.endswith(".conv1") and name.startswith("layer"):
                half = module.weight.shape[0] // 2
                module.weight[:half] = 0
                bn = teacher.get_submodule(name[: -len("conv1")] + "bn1")
                bn.weight[:half] = 0
                bn.bias[:half] = 0
    plan = allocate(teacher, KIND, 0.2, X, ["linear"], round_to=8, target="macs")
    assert plan.dropped_blocks == [] and plan.removed
    assert plan.splits[0]["damage"] < 1e-9 < min(s["damage"] for s in plan.splits[1:])


def test_the_alpha_zero_blend_is_the_student_and_it_saves_loads_and_exports(tmp_path):
    """α = 1: the teacher, bit for bit; α = 0: the blocks dropped and the channels removed (to
    float rounding: the narrowed convs sum fewer terms); collapsed and narrowed, its model file
    rebuilds it bit for bit, and its ONNX file computes what PyTorch does."""
    teacher = _resnet20()
    plan = allocate(teacher, KIND, 0.6, X, ["linear"], round_to=8, target="macs")
    _assert_fades_to_the_student(teacher, plan, tmp_path)


def test_a_dropped_downsampling_block_whose_input_stream_is_cut_fades_to_the_student(tmp_path):
    """layer3.0 dropped (its option-A shortcut subsamples and pads stage 2's stream) while
    stage 2's stream loses channels: the map in its shortcut reads the narrowed stream, so its
    branch is blended where the shortcut runs it, inside the block's blend; the student is what
    the plan says, through the fade, the collapse, the narrowing and its model file."""
    teacher = _resnet20(zeroed=("layer3.0",))  # ranked first: dropping it moves nothing
    plan = allocate(teacher, KIND, 0.5, X, None, 8, "macs", dropped_blocks=1)
    assert plan.dropped_blocks == ["layer3.0"]
    assert "layer3.0.shortcut" in {lp.name for lp in plan.layers}  # a reader of a cut stream
    _assert_fades_to_the_student(teacher, plan, tmp_path)


def _assert_fades_to_the_student(teacher, plan, tmp_path) -> None:
    from alphaprune.loading import load_model
    from alphaprune.modelfile import recipe_for, save_model, with_plan
    from alphaprune.pipeline.deploy import export

    faded = make_student(teacher, plan, "pretrained")
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(faded(x), teacher(x), rtol=0, atol=0)
        blend.set_alpha(faded, 0.0)
        at_zero = faded(x)
        want = _student(teacher, plan)(x)
        # a removed channel's reader input is zero in the blend and absent in the student: the
        # sums differ in their order and their count of exact zeros, a few ulps of the logits
        torch.testing.assert_close(at_zero, want, rtol=1e-5, atol=1e-5)
        student = blend.collapse(faded)
        record = channels.narrow_student(student, plan.removed, X[:1])
        torch.testing.assert_close(student(x), at_zero, rtol=1e-5, atol=1e-5)
    assert count_params(student) == plan.student_params
    recipe = with_plan(recipe_for("resnet20", 10, (3, 32, 32)), plan, record)
    save_model(tmp_path / "student.pt", student, recipe)
    loaded, _ = load_model(tmp_path / "student.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student(x), rtol=0, atol=0)
    export.export_onnx(loaded, (3, 32, 32), tmp_path / "student.onnx")
    theirs = export.session(tmp_path / "student.onnx").run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(theirs, loaded(x).detach().numpy(), rtol=1e-4, atol=1e-4)


def _exact_ms(student, positions: dict[str, int]) -> float:
    return sum(
        MS_PER_MAC * m.weight.shape[0] * m.weight.shape[1] * positions[n]
        for n, m in student.named_modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    )


@pytest.mark.parametrize("amount", [0.5, 0.6667])
def test_a_latency_plan_predicts_the_time_of_the_student_it_builds(amount):
    """On a stand-in table, a student with blocks dropped and channels cut: its predicted time
    is its exact time (a dropped block's layers take none; a group whose root went with a
    dropped block, layer2.0's stream, is found under its new root), and within the budget.
    Three zero-residual blocks make the split drop them, layer2.0 among them."""
    teacher = _resnet20(zeroed=("layer1.0", "layer2.0", "layer3.0"))
    table, positions = stand_in_table(teacher, X, ["linear"])
    plan = allocate(teacher, KIND, amount, X, ["linear"], 8, "latency", table=table)
    assert {"layer1.0", "layer2.0", "layer3.0"} <= set(plan.dropped_blocks)
    assert "layer2.0.conv2" not in plan.removed  # the stream's root in the teacher, gone
    student = _student(teacher, plan)
    assert plan.latency["student_ms"] == pytest.approx(_exact_ms(student, positions), rel=1e-9)
    assert plan.latency["student_ms"] <= (1 - amount) * table.full_ms * (1 + 1e-9)
    assert plan.latency["blocks"] == plan.dropped_blocks


def test_a_table_renamed_to_a_groups_new_root_predicts_as_before():
    """layer2.0 dropped: the stage-2 stream's root (layer2.0.conv2) goes with it and
    layer2.1.conv2 names the group; the table named as the new groups predicts for the new name
    what it predicted for the old."""
    teacher = _resnet20()
    table, _ = stand_in_table(teacher, X, ["linear"])
    model = drop(copy.deepcopy(teacher), ["layer2.0"])
    groups, _ = channels.channel_groups(model, X[:2], ["linear"])
    renamed = named_as(table, groups)
    assert "layer2.0.conv2" in table.widths and "layer2.0.conv2" not in renamed.widths
    assert renamed.widths["layer2.1.conv2"] == table.widths["layer2.0.conv2"] == 32
    assert renamed.predict({"layer2.1.conv2": 16}) == table.predict({"layer2.0.conv2": 16})
    assert named_as(table, [g for g in groups if g.root in table.widths]) is table
    # the view without layer2.0's layers: a group's time and saving are from its base, the model
    # without them, not from the teacher's
    view = without(renamed, ["layer2.0.conv1", "layer2.0.conv2"])
    assert view.base_ms == view.predict({}) < table.full_ms
    assert view.group_ms("layer2.1.conv2", 32) == view.base_ms
    saved = view.base_ms - view.predict({"layer2.1.conv2": 16})
    assert view.saving_ms("layer2.1.conv2", 16) == pytest.approx(saved, rel=1e-12)
    assert saved > 0


def test_a_split_fixed_by_hand_drops_that_many_of_the_ranked_blocks():
    """dropped_blocks: the first N blocks of the ranking the allocator weighs, the rest of the
    budget in channels; the only split tried. More than the ranking takes is refused."""
    teacher = _resnet20()
    free = allocate(teacher, KIND, 0.6, X, ["linear"], round_to=8, target="macs")
    ranked = free.splits[-1]["blocks"]  # the longest split lists the ranking
    for n in (0, 2, len(ranked)):
        plan = allocate(teacher, KIND, 0.6, X, ["linear"], 8, "macs", dropped_blocks=n)
        assert sorted(plan.dropped_blocks) == sorted(ranked[:n]) and plan.macs_achieved >= 0.6
        assert [s["blocks"] for s in plan.splits] == [ranked[:n]]
        chosen = next(s for s in free.splits if s["blocks"] == ranked[:n])
        assert plan.splits[0]["damage"] == chosen["damage"]
    with pytest.raises(BudgetError, match=rf"the first {len(ranked)} ranked blocks meet"):
        allocate(teacher, KIND, 0.6, X, ["linear"], 8, "macs", dropped_blocks=len(ranked) + 1)


def test_a_split_out_of_range_or_of_another_kind_is_refused():
    teacher = _resnet20()
    with pytest.raises(BudgetError, match="dropped_blocks must be 0 or more, got -1"):
        allocate(teacher, KIND, 0.5, X, ["linear"], 8, "macs", dropped_blocks=-1)
    with pytest.raises(BudgetError, match="dropped_blocks applies to branch 'blocks\\+channels'"):
        allocate(teacher, "channels", 0.5, X, ["linear"], 8, "macs", dropped_blocks=2)


def test_a_table_of_another_model_is_refused_not_skipped_as_a_split_out_of_reach():
    """A table whose layer3.1 is 48 wide, not 64: every split with channels is refused for it;
    that is a bad table, not a split out of reach, so it is said, not silently passed over for
    blocks alone."""
    teacher = _resnet20()
    table, _ = stand_in_table(teacher, X, ["linear"])
    other = dataclasses.replace(table, widths={**table.widths, "layer3.1.conv1": 48})
    with pytest.raises(BudgetError, match="widths of layer3.1.conv1 are not this model's"):
        allocate(teacher, KIND, 0.5, X, ["linear"], 8, "latency", table=other)


def test_what_cannot_be_met_is_refused_with_the_reason():
    """Stage 3 kept whole holds 82% of the parameters: 90% cannot go."""
    teacher = _resnet20()
    with pytest.raises(
        BudgetError,
        match=r"0\.9 \(of the parameters\) is unreachable with branch 'blocks\+channels': "
        r"dropping all 6 blocks it may drop saves 0\.\d+ of the teacher's parameters, and the "
        r"channels left cannot",
    ):
        allocate(teacher, KIND, 0.9, X, ["linear", "layer3.*"], round_to=8, target="params")


def test_blocks_with_a_projection_shortcut_are_kept_whole():
    """tv:resnet18's downsampling blocks have a conv in their shortcut, which reads the stream
    whose channels may go: they are kept whole (listed as excluded), the others may go."""
    torch.manual_seed(0)
    model = build_model("tv:resnet18", num_classes=10, in_channels=3, image_size=32).eval()
    plan = allocate(model, KIND, 0.3, X[:4], None, round_to=8, target="macs")
    assert {"layer2.0", "layer3.0", "layer4.0"} <= set(plan.excluded)
    assert not {"layer2.0", "layer3.0", "layer4.0"} & set(plan.dropped_blocks)
