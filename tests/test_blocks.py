"""Residual blocks found generically (`alphaprune.blocks`): the right ones on the CIFAR ResNets,
torchvision's ResNet-18 and MobileNetV2 (inverted residuals), what is `f` and what the shortcut,
and an error where there are none or fx cannot trace the model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from alphaprune.blocks import BlockError, find_blocks
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
