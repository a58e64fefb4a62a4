"""Residual blocks found generically (`alphaprune.blocks`): the right ones on the CIFAR ResNets,
torchvision's ResNet-18 and MobileNetV2 (inverted residuals), what is `f` and what the shortcut,
and an error where there are none or fx cannot trace the model."""

from __future__ import annotations

import copy
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from torch import nn

from alphaprune import blend
from alphaprune.blocks import (
    BlockError,
    drop,
    find_blocks,
    insert_blends,
    removable_blocks,
    shortcut_module,
    writes_input,
)
from alphaprune.branches.base import count_params
from alphaprune.models import build_model


def _names(stages: int, per_stage: int) -> list[str]:
    return [f"layer{s}.{b}" for s in range(1, stages + 1) for b in range(per_stage)]


@pytest.mark.parametrize(
    ("name", "size", "blocks"),
    [
        ("resnet20", 32, _names(3, 3)),
        ("resnet56", 32, _names(3, 9)),
        ("tv:resnet18", 64, _names(4, 2)),
        # the inverted residuals with a skip: stride 1 and as many channels out as in
        ("tv:mobilenet_v2", 64, [f"features.{i}" for i in (3, 5, 6, 8, 9, 10, 12, 13, 15, 16)]),
    ],
)
def test_the_blocks_of_residual_models(name, size, blocks):
    found = find_blocks(build_model(name, 10, image_size=size))
    assert [b.name for b in found] == blocks
    for b in found:  # f's layers are the block's own, a shortcut's too
        assert all(layer.startswith(b.name + ".") for layer in b.residual + b.shortcut)
        assert not set(b.residual) & set(b.shortcut)
    if name == "tv:resnet18":  # a stage's first block projects its input: the downsample
        projected = {b.name: b.shortcut for b in found if b.shortcut}
        assert projected == {
            f"layer{s}.0": (f"layer{s}.0.downsample.0", f"layer{s}.0.downsample.1")
            for s in (2, 3, 4)
        }
    else:  # the identity, or the CIFAR ResNets' option-A map: no layer with weights
        assert all(b.shortcut == () for b in found)


def _block_output_before_and_after_perturbing_f(model, block, x, f_zero: bool):
    """The block's output, then again with f's weights perturbed (restored after); with
    `f_zero`, f's last layer answers zeros."""
    outputs = []
    handles = [
        model.get_submodule(block.name).register_forward_hook(lambda m, i, o: outputs.append(o))
    ]
    if f_zero:
        last = model.get_submodule(block.residual[-1])
        handles.append(last.register_forward_hook(lambda m, i, o: torch.zeros_like(o)))
    saved = copy.deepcopy(model.state_dict())
    try:
        with torch.no_grad():
            model(x)
            for n in block.residual:
                for p in model.get_submodule(n).parameters(recurse=False):
                    p.add_(torch.randn_like(p))
            model(x)
    finally:
        model.load_state_dict(saved)
        for h in handles:
            h.remove()
    return outputs


@pytest.mark.parametrize(
    ("name", "size", "checked"),
    [
        ("resnet20", 32, ["layer1.0", "layer2.0", "layer3.0"]),  # identity, option-A maps
        ("tv:resnet18", 64, ["layer1.0", "layer2.0"]),  # identity, a projection
        ("tv:mobilenet_v2", 64, ["features.3", "features.16"]),
    ],
)
def test_the_residual_is_f_with_f_zero_the_block_ignores_its_layers(name, size, checked):
    """With the last layer of f answering zeros, the block's output does not depend on f's
    weights (exactly); without, it does: f is what the block adds to its shortcut."""
    torch.manual_seed(0)
    model = build_model(name, 10, image_size=size).eval()
    x = torch.randn(2, 3, size, size)
    for block in (b for b in find_blocks(model) if b.name in checked):
        before, after = _block_output_before_and_after_perturbing_f(model, block, x, True)
        assert torch.equal(before, after), block.name
        before, after = _block_output_before_and_after_perturbing_f(model, block, x, False)
        assert not torch.equal(before, after), block.name


def test_a_model_without_blocks_is_refused_with_the_reason():
    with pytest.raises(BlockError, match="VGG has no residual blocks: no addition"):
        find_blocks(build_model("vgg11", 10))


class _Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        if x.sum() > 0:  # data-dependent: fx cannot trace it
            return self.conv(x) + x
        return x


def test_a_model_fx_cannot_trace_is_refused_with_the_reason():
    with pytest.raises(BlockError, match=r"torch.fx cannot trace _Branching \(TraceError"):
        find_blocks(_Branching())


# ---------------------------------------------------------------- dropping and fading blocks
FADED = {  # model: image size
    "resnet20": 32,
    "resnet56": 32,
    "tv:resnet18": 32,
    "tv:mobilenet_v2": 32,
}


def _trained(name: str, size: int) -> nn.Module:
    model = build_model(name, num_classes=10, in_channels=3, image_size=size)
    model.train()(torch.randn(16, 3, size, size))  # BatchNorm statistics that are not (0, 1)
    return model.eval()


@pytest.mark.parametrize("name", list(FADED))
def test_the_alpha_zero_blend_is_the_model_with_the_blocks_dropped(name):
    """α = 1: the teacher; α = 0: every faded block its shortcut, bit for bit (lerp at 0 and 1
    returns one end exactly); collapsed, the same modules the model file's recipe rebuilds."""
    size = FADED[name]
    teacher = _trained(name, size)
    names = [b.name for b in removable_blocks(teacher)][::2]
    faded = insert_blends(copy.deepcopy(teacher), names)
    x = torch.randn(4, 3, size, size)
    dropped = drop(copy.deepcopy(teacher), names).eval()
    with torch.no_grad():
        torch.testing.assert_close(faded(x), teacher(x), rtol=0, atol=0)
        blend.set_alpha(faded, 0.0)
        torch.testing.assert_close(faded(x), dropped(x), rtol=0, atol=0)
        student = blend.collapse(faded)
        torch.testing.assert_close(student(x), dropped(x), rtol=0, atol=0)
    assert count_params(student) == count_params(dropped) < count_params(teacher)
    for n in names:  # the block's residual layers are gone, its shortcut's kept
        kept = {f"{n}.{m}" for m, _ in student.get_submodule(n).named_modules() if m}
        block = next(b for b in find_blocks(teacher) if b.name == n)
        assert kept >= set(block.shortcut) and not kept & set(block.residual)


def test_a_block_student_saves_loads_and_exports(tmp_path):
    """The student of a `blocks` plan: its model file rebuilds the dropped blocks from the recipe
    (the same outputs, bit for bit), and its ONNX file computes what PyTorch does."""
    from alphaprune.budget.allocator import allocate
    from alphaprune.loading import load_model
    from alphaprune.modelfile import recipe_for, save_model
    from alphaprune.pipeline.deploy import export
    from alphaprune.student import make_student

    teacher = _trained("resnet20", 32)
    x = torch.randn(8, 3, 32, 32)
    plan = allocate(teacher, "blocks", 0.3, x)
    student = make_student(teacher, plan)
    blend.set_alpha(student, 0.0)
    student = blend.collapse(student).eval()
    recipe = recipe_for("resnet20", 10, (3, 32, 32), plan=plan)
    save_model(tmp_path / "student.pt", student, recipe)
    loaded, _ = load_model(tmp_path / "student.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), student(x), rtol=0, atol=0)
    assert count_params(loaded) == plan.student_params
    export.export_onnx(loaded, (3, 32, 32), tmp_path / "student.onnx")
    theirs = export.session(tmp_path / "student.onnx").run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(theirs, loaded(x).detach().numpy(), rtol=1e-4, atol=1e-4)


class _AddsInPlace(nn.Module):
    """A block that adds to its input in place, then a layer scale and an in-place method."""

    def __init__(self):
        super().__init__()
        self.f = nn.Conv2d(4, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.full((1, 4, 1, 1), 0.5))

    def forward(self, x):
        x += self.f(x) * self.scale
        return x.relu_()


def test_in_place_blocks_fade_and_drop_what_only_f_used():
    """`x += f(x)` hands the block's input back changed: the blend runs the block on a copy
    (such a block runs in inference only: autograd refuses it a backward pass); the dropped
    block's in-place ReLU is made out-of-place; the scale only f used goes with it."""
    net = nn.Sequential(nn.Conv2d(3, 4, 1), _AddsInPlace(), nn.Flatten(), nn.LazyLinear(2))
    net(torch.randn(1, 3, 4, 4))
    (block,) = removable_blocks(net)
    shortcut = shortcut_module(net.get_submodule(block.name))
    assert not list(shortcut.parameters())  # neither f's conv nor the scale
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        expected = net[3](net[2](net[0](x).relu()))
    faded = insert_blends(copy.deepcopy(net), [block.name])
    blend.set_alpha(faded, 0.0)
    with torch.no_grad():
        torch.testing.assert_close(faded(x), expected, rtol=0, atol=0)
    blend.set_alpha(faded, 1.0)
    with torch.no_grad():  # the block on a copy: the shortcut read the input as it was
        torch.testing.assert_close(faded(x), net(x.clone()), rtol=0, atol=0)


class _Writes(nn.Module):
    """A block whose forward is one of several ways to write, or not, into its input."""

    def __init__(self, how: str):
        super().__init__()
        self.how, self.f = how, nn.Conv2d(4, 4, 1)
        self.act = nn.ReLU(inplace=how == "module")
        self.same = nn.Identity()

    def forward(self, x):
        if self.how == "module":  # a pre-activation block's ReLU, built in place
            return self.act(x) + self.f(x)
        if self.how == "view":  # through a view of the input
            x.view(x.shape[0], -1).mul_(2)
        elif self.how == "setitem":
            x[:, :1] = 0
        elif self.how == "function":
            torch.nn.functional.relu(x, inplace=True)
        elif self.how == "torch_":
            torch.relu_(x)
        elif self.how == "no_twin":  # an in-place function without an out-of-place twin here
            x = torch.clamp_(x, min=0)  # (its result read: fx drops an unread call)
        elif self.how == "identity":  # through a module that hands its input back
            self.same(x).relu_()
        elif self.how == "zero":  # a method with no out-of-place form (no `x.zero()`)
            x = x.zero_() + 1
        elif self.how == "out":
            x = torch.add(x, 1, out=x)
        out = self.f(x)
        out += x  # written in place, but into f's output: not the input
        return torch.relu(out)


# blocks that cannot be dropped: fx cannot trace an item assigned; an in-place call with no
# out-of-place twin (in `blocks._OUT_OF_PLACE`, or a method without its `_`), or an `out=`,
# would still write into the input once dropped
REFUSED = {
    "setitem": "fx cannot trace",
    "no_twin": "writes into its input",
    "zero": "writes into its input",
    "out": "writes into its input",
}


@pytest.mark.parametrize(
    ("how", "writes"),
    [
        ("module", True),
        ("view", True),
        ("setitem", True),
        ("function", True),
        ("torch_", True),
        ("no_twin", True),
        ("identity", True),
        ("zero", True),
        ("out", True),
        ("none", False),
    ],
)
def test_a_block_that_writes_into_its_input_is_seen_and_dropped_only_where_its_shortcut_wont(
    how, writes
):
    """`writes_input` sees a write into the input in the traced graph (an in-place activation
    on it or on a view of it, an in-place function, a module built in place); the ResNets'
    and MobileNetV2's blocks make none. A dropped block whose shortcut would still write into
    its input is refused (no out-of-place twin for the call); one that fx makes out-of-place
    fades to the shortcut of the input as it was. (fx traces `x += f(x)` as `x + f(x)`: the
    blend runs every block on a copy, `test_in_place_blocks_fade_and_drop_what_only_f_used`.)"""
    assert writes_input(_Writes(how)) is writes
    for name, size in FADED.items():
        model = build_model(name, num_classes=10, in_channels=3, image_size=size)
        names = [b.name for b in removable_blocks(model)]
        assert not any(writes_input(model.get_submodule(n)) for n in names), name
    assert not writes_input(_AddsInPlace())  # what fx cannot see
    net = nn.Sequential(nn.Conv2d(3, 4, 1), _Writes(how))
    if how in REFUSED:
        with pytest.raises(BlockError, match=REFUSED[how]):
            shortcut_module(net[1])
        with pytest.raises(BlockError, match=REFUSED[how]) if how == "setitem" else nullcontext():
            assert removable_blocks(net) == []
        return
    assert not writes_input(shortcut_module(net[1]))
    faded = insert_blends(copy.deepcopy(net), ["1"])
    blend.set_alpha(faded, 0.0)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():  # the shortcut of the input as it was (a ReLU follows the addition)
        torch.testing.assert_close(faded(x), net[0](x).relu(), rtol=0, atol=0)


def test_a_fading_block_trains_and_its_identity_is_not_written_in_place():
    """torchvision's BasicBlock ends in an in-place ReLU after the addition: the dropped block's
    is made out-of-place, or it would write into the block's input, which the block itself
    reads (autograd would refuse the backward pass)."""
    model = _trained("tv:resnet18", 32).train()
    faded = insert_blends(model, ["layer1.1", "layer2.0"])
    blend.set_alpha(faded, 0.5)
    trainable = blend.set_trainable(faded, "student")
    faded(torch.randn(2, 3, 32, 32)).sum().backward()
    conv = faded.get_submodule("layer1.1").original.conv1
    stem = faded.get_submodule("conv1")
    assert not any(p is conv.weight for p in trainable)  # the block is the original
    assert stem.weight.grad is not None and stem.weight.grad.abs().sum() > 0
