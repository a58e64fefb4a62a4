"""`branch: channels`: groups from Torch-Pruning's graph, checked numerically; the allocator
meets the budget and ranks channels as Torch-Pruning's global pruning does; the student fades
them out at the readers and, at α = 0, is narrowed to exactly the same function."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch_pruning as tp
from torch import nn

from alphaprune import blend, channels
from alphaprune.branches.base import count_params
from alphaprune.branches.channels import Channels
from alphaprune.budget.allocator import allocate
from alphaprune.costs import count_macs
from alphaprune.loading import load_model
from alphaprune.modelfile import recipe_for, save_model, with_plan
from alphaprune.models import build_model
from alphaprune.student import make_student

# name, input shape: the registered models and two torchvision ones (at 64 px to stay quick)
MODELS = [
    ("cnn", (1, 8, 8)),
    ("vgg11", (3, 32, 32)),
    ("resnet20", (3, 32, 32)),
    ("resnet56", (3, 32, 32)),
    ("tv:resnet18", (3, 64, 64)),
    ("tv:mobilenet_v2", (3, 64, 64)),
]


def _teacher(name: str, shape) -> nn.Module:
    """A freshly built model whose BatchNorm statistics and affine parameters are not the
    identity (so that a channel's downstream effects are not trivially zero), its classifier
    scaled so that its logits are at most about 10, as a trained model's are."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1])
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        model.eval()
        scale = model(torch.randn(8, *shape)).abs().max() / 10
        classifier = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        classifier.weight /= scale
        classifier.bias /= scale
    return model


@pytest.fixture(scope="module", params=MODELS, ids=[m for m, _ in MODELS])
def planned(request):
    """(name, teacher, example, plan) at 50% of the parameters removed."""
    name, shape = request.param
    teacher = _teacher(name, shape)
    example = torch.randn(1, *shape)
    return name, teacher, example, allocate(teacher, "channels", 0.5, example)


def test_the_narrow_student_is_the_alpha_zero_blend(planned):
    name, teacher, example, plan = planned
    student = make_student(teacher, plan, "pretrained").eval()
    assert {n for n, _ in blend.blends(student)} == {lp.name for lp in plan.layers}
    x = torch.randn(4, *example.shape[1:])
    with torch.no_grad():
        torch.testing.assert_close(student(x), teacher(x), rtol=1e-4, atol=1e-4)  # α = 1
        blend.set_alpha(student, 0.0)
        faded = student(x)
        blend.collapse(student)
        record = channels.narrow_student(student, plan.removed, example)
        narrow = student(x)
    assert (narrow - faded).abs().max() <= 1e-4
    assert not any(isinstance(m, Channels) for m in student.modules())
    for root, removed in plan.removed.items():  # fewer channels where the plan says
        before = teacher.get_submodule(root)
        after = student.get_submodule(root)
        assert after.weight.shape[0] == before.weight.shape[0] - len(removed) > 0
    assert record and {r["module"] for r in record} >= set(plan.removed)
    # the plan's counts are the narrow student's, and meet the target
    assert count_params(student) == plan.student_params
    assert count_macs(student, example) == plan.student_macs < plan.teacher_macs
    assert plan.achieved >= 0.5


@pytest.mark.parametrize(("name", "shape"), MODELS, ids=[m for m, _ in MODELS])
def test_a_mac_target_is_met_by_the_narrow_student(name, shape):
    teacher, example = _teacher(name, shape), torch.randn(1, *shape)
    plan = allocate(teacher, "channels", 0.4, example, target="macs")
    student = make_student(teacher, plan, "pretrained").eval()
    blend.set_alpha(student, 0.0)
    blend.collapse(student)
    channels.narrow_student(student, plan.removed, example)
    macs = count_macs(student, example)
    assert macs == plan.student_macs <= 0.6 * plan.teacher_macs
    assert count_params(student) == plan.student_params
    assert 0.4 <= plan.macs_achieved < 0.45  # whole channels of one group overshoot little


def test_the_target_is_met_within_one_block_of_the_crossing_group():
    teacher = _teacher("resnet20", (3, 32, 32))
    example = torch.randn(1, 3, 32, 32)
    for round_to in (1, 8):
        plan = allocate(teacher, "channels", 0.4, example, round_to=round_to)
        widths = {g: teacher.get_submodule(g).out_channels for g in plan.removed}
        for root, removed in plan.removed.items():
            kept = widths[root] - len(removed)
            assert kept >= round_to and kept % round_to == 0
        # giving one block back to the group that crossed the target would miss it: the
        # overshoot is less than one block of some group (each block's group is its own here:
        # a ResNet block's inner width, conv1 out, bn1, conv2 in)
        changed = {lp.name: lp.params_before - lp.params_after for lp in plan.layers + plan.coupled}
        overshoot = plan.teacher_params - plan.student_params - 0.4 * plan.teacher_params
        assert overshoot >= 0

        blocks = [
            sum(v for m, v in changed.items() if m.startswith(root.rsplit(".", 1)[0] + "."))
            / len(removed)
            * min(round_to, len(removed))
            for root, removed in plan.removed.items()
        ]
        assert any(overshoot < b for b in blocks)


class _PaddedResidual(nn.Module):
    """A residual stream widened by a zero-pad, which Torch-Pruning's tracer reads as an
    element-wise op (the CIFAR ResNets' option-A shortcut before it was a `ChannelMap`)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.inner = nn.Conv2d(8, 16, 3, padding=1)
        self.conv = nn.Conv2d(16, 16, 3, padding=1)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = self.conv(torch.relu(self.inner(x))) + nn.functional.pad(x, (0, 0, 0, 0, 4, 4))
        return self.head(x.mean((2, 3)))


def test_misread_groups_are_excluded_and_named():
    torch.manual_seed(0)
    model = _PaddedResidual().eval()
    plan = allocate(model, "channels", 0.2, torch.randn(1, 3, 8, 8), exclude=["head"])
    assert "misreads" in plan.ungrouped["conv"]  # its stream, merged with the stem's
    assert set(plan.removed) == {"inner"}
    assert plan.to_dict()["ungrouped"] == plan.ungrouped


@pytest.mark.parametrize("name", ["resnet20", "resnet56"])
def test_option_a_streams_are_groups(name):
    """Each stage's residual stream is a group of its own: the stem's reaches the next stage's
    shortcut as its input, each later stage's holds its shortcut's output and the next reader
    (the next shortcut, or the classifier), and none is excluded."""
    teacher = _teacher(name, (3, 32, 32))
    groups, excluded = channels.channel_groups(teacher, torch.randn(1, 3, 32, 32), ["linear"])
    assert excluded == {}
    last = {"resnet20": 2, "resnet56": 8}[name]
    streams = {"conv1": 16, "layer2.0.conv2": 32, "layer3.0.conv2": 64}
    by_root = {g.root: g for g in groups}
    assert {r: by_root[r].width for r in streams} == streams
    fns = {r: {(m.module, m.fn) for m in by_root[r].members} for r in streams}
    assert ("layer2.0.shortcut", "prune_channel_map_in_channels") in fns["conv1"]
    assert ("layer2.0.shortcut", "prune_channel_map_out_channels") in fns["layer2.0.conv2"]
    assert ("layer3.0.shortcut", "prune_channel_map_in_channels") in fns["layer2.0.conv2"]
    assert ("layer3.0.shortcut", "prune_channel_map_out_channels") in fns["layer3.0.conv2"]
    assert ("linear", "prune_linear_in_channels") in fns["layer3.0.conv2"]
    # every block's second conv writes its stage's stream
    for stage, root in zip((1, 2, 3), streams, strict=True):
        for block in range(last + 1):
            assert (f"layer{stage}.{block}.conv2", "prune_conv_out_channels") in fns[root]


def test_save_and_load_replay_the_narrowing(planned, tmp_path):
    name, teacher, example, plan = planned
    student = make_student(teacher, plan, "pretrained").eval()
    blend.set_alpha(student, 0.0)
    blend.collapse(student)
    record = channels.narrow_student(student, plan.removed, example)
    shape = tuple(example.shape[1:])
    recipe = with_plan(recipe_for(name, 10, shape), plan, record)
    save_model(tmp_path / "s.pt", student, recipe)
    loaded, saved = load_model(tmp_path / "s.pt")
    assert saved["layers"] == [] and saved["narrowing"] == record
    x = torch.randn(2, *shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student(x))
    assert count_params(loaded) == count_params(student)


def test_lsq_refits_the_readers_on_their_kept_inputs():
    teacher = _teacher("cnn", (1, 8, 8))
    x = torch.randn(256, 1, 8, 8)
    plan = allocate(teacher, "channels", 0.5, x[:1])
    pretrained = make_student(teacher, plan, "pretrained").eval()
    fitted = make_student(teacher, plan, "lsq", calibration=[x]).eval()
    for s in (pretrained, fitted):
        blend.set_alpha(s, 0.0)
    for _, b in blend.blends(fitted):
        w = b.branch.layer.weight
        dropped = ~b.branch.keep.bool()
        assert torch.all(w[:, dropped] == 0)  # nothing of the removed inputs is read
    # each reader's output is closer to the teacher's with the refit than with the columns cut
    with torch.no_grad():
        y = teacher(x)
        assert (fitted(x) - y).pow(2).mean() < (pretrained(x) - y).pow(2).mean()


def test_a_stream_map_fades_its_removed_inputs_and_has_nothing_to_fit():
    """The option-A shortcut reading a stream that loses channels gets a `channels` branch with
    those inputs faded like a conv's; it has no weights, so an lsq init leaves it the map with
    the kept inputs, and the narrowed student is its α = 0 blend."""
    teacher = _teacher("resnet20", (3, 32, 32))
    x = torch.randn(64, 3, 32, 32)
    plan = allocate(teacher, "channels", 0.5, x[:1], exclude=["linear"])
    assert "conv1" in plan.removed  # the stem's stream loses channels: the map reads it
    student = make_student(teacher, plan, "lsq", calibration=[x]).eval()
    branch = student.get_submodule("layer2.0.shortcut").branch
    assert isinstance(branch, Channels) and branch.num_params() == 0
    assert torch.equal(branch.equivalent_weight()[0], branch.keep)
    assert branch.keep.count_nonzero() == 16 - len(plan.removed["conv1"])
    blend.set_alpha(student, 0.0)
    with torch.no_grad():
        want = student(x)
        blend.collapse(student)
        channels.narrow_student(student, plan.removed, x[:1])
        torch.testing.assert_close(student(x), want, rtol=0, atol=1e-4 * want.abs().max())


def test_frozen_parts_stay_frozen_after_narrowing():
    teacher = _teacher("vgg11", (3, 32, 32))
    example = torch.randn(1, 3, 32, 32)
    plan = allocate(teacher, "channels", 0.5, example)
    student = make_student(teacher, plan, "pretrained")
    blend.set_trainable(student, "branches")
    blend.set_alpha(student, 0.0)
    blend.collapse(student)
    channels.narrow_student(student, plan.removed, example)
    trains = {n for n, p in student.named_parameters() if p.requires_grad}
    assert trains == {f"{lp.name}.{p}" for lp in plan.layers for p in ("weight", "bias")} & {
        n for n, _ in student.named_parameters()
    }
    assert "features.0.weight" not in trains  # the first conv: excluded, frozen, untouched


def test_channels_needs_an_init_that_keeps_the_other_inputs():
    from alphaprune.pipeline.params.recipe import PruneConfig

    with pytest.raises(ValueError, match="init 'random' is not supported for branch 'channels'"):
        PruneConfig(branch="channels", init="random")
    with pytest.raises(ValueError, match="round_to applies to branches 'channels' and 'blocks"):
        PruneConfig(branch="lowrank", round_to=8)


def test_channel_students_round_their_widths_to_8_unless_told_otherwise():
    """Unrounded widths ran slower than the teacher where the student runs (digits: 16, 17, 34
    at 0.97x in onnxruntime; 16, 16, 32 at 1.45x): the default rounds, Torch-Pruning's own
    recipe in the grid keeps its default of any width."""
    from alphaprune.pipeline.params.loader import load_params
    from alphaprune.pipeline.params.recipe import PruneConfig

    assert PruneConfig(branch="channels", init="lsq").channel_block == 8
    assert PruneConfig(branch="channels", init="lsq", round_to=1).channel_block == 1
    params = load_params([Path(__file__).resolve().parents[1] / "params.yaml"])
    assert params.variant("channels").channel_block == 8
    assert params.variant("torch_pruning").channel_block == 1


@pytest.mark.parametrize(("name", "shape"), [("cnn", (1, 8, 8)), ("vgg11", (3, 32, 32))])
def test_the_allocator_removes_what_torch_prunings_global_pruning_removes(name, shape):
    teacher = _teacher(name, shape)
    example = torch.randn(1, *shape)
    plan = allocate(teacher, "channels", 0.5, example)
    groups, _ = channels.channel_groups(teacher, example, plan.excluded)
    total = sum(g.width for g in groups)
    removed = sum(len(v) for v in plan.removed.values())
    model = copy.deepcopy(teacher)
    pruner = tp.pruner.BasePruner(
        model,
        example,
        importance=tp.importance.GroupMagnitudeImportance(p=2),
        global_pruning=True,
        pruning_ratio=(removed - 0.5) / total,  # Torch-Pruning removes N - int(N (1 - ratio))
        ignored_layers=[model.get_submodule(n) for n in plan.excluded],
    )
    pruner.step()
    theirs = {root: tuple(sorted(idxs)) for root, _, idxs in pruner.pruning_history()}
    assert theirs == plan.removed
