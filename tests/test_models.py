"""Tests for the model registry: every model builds, runs, and has the published size."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from alphaprune import models
from alphaprune.channelmap import ChannelMap
from alphaprune.models import UnknownModelError, build_model, register

TV_MODELS = ["tv:resnet18", "tv:mobilenet_v2"]


def _input_shape(name: str) -> tuple[int, int]:
    """(in_channels, image_size) each model is meant for: the cnn targets 1x8x8 digits."""
    return (1, 8) if name == "cnn" else (3, 32)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test register models without leaking them into the real registry."""
    monkeypatch.setattr(models, "MODELS", copy.copy(models.MODELS))


def test_the_registry_holds_the_builtins() -> None:
    names = sorted(models.MODELS)
    expected = {"cnn", "vgg11", "vgg13", "vgg16", "vgg19", "resnet20", "resnet56"}
    assert expected <= set(names)
    assert not any(n.startswith("tv:") for n in names)


@pytest.mark.parametrize("name", sorted(models.MODELS) + TV_MODELS)
def test_every_model_builds_and_classifies(name: str) -> None:
    torch.manual_seed(0)
    in_channels, image_size = _input_shape(name)
    model = build_model(name, num_classes=10, in_channels=in_channels, image_size=image_size)

    assert isinstance(model, nn.Module)
    assert model.training, "build_model must return a model in train mode"

    # Pruning code walks layers in definition order: a conv feeds the net, a linear ends it.
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert isinstance(layers[0], nn.Conv2d)
    assert isinstance(layers[-1], nn.Linear)
    assert layers[-1].out_features == 10
    assert layers[0].in_channels == in_channels

    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, in_channels, image_size, image_size))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()


def test_cnn_is_small_and_accepts_other_inputs() -> None:
    model = build_model("cnn", num_classes=10, in_channels=1, image_size=8)
    assert 15_000 < _n_params(model) < 40_000  # small: the default grid runs in minutes

    rgb = build_model("cnn", num_classes=7, in_channels=3, image_size=32).eval()
    with torch.no_grad():
        assert rgb(torch.randn(2, 3, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize(
    ("name", "published"),
    [
        ("resnet20", 0.27e6),  # He et al. 2016, Table 6
        ("resnet56", 0.85e6),
        ("vgg16", 14.7e6),  # pytorch-cifar VGG-16 with BN and a single linear classifier
    ],
)
def test_parameter_counts_match_published(name: str, published: float) -> None:
    n = _n_params(build_model(name, num_classes=10))
    assert n == pytest.approx(published, rel=0.01)


def test_resnet_shortcuts_have_no_parameters() -> None:
    # Option A: the only parameters are convs, BNs and the final linear, so the count is exact.
    model = build_model("resnet20", num_classes=10)
    assert _n_params(model) == 269_722
    shortcuts = [m for m in model.modules() if isinstance(m, ChannelMap)]
    assert len(shortcuts) == 2  # one at the start of stage 2, one at stage 3
    assert all(_n_params(s) == 0 for s in shortcuts)


def test_resnet_and_vgg_accept_other_sizes_and_channels() -> None:
    with torch.no_grad():
        r = build_model("resnet20", num_classes=5, in_channels=1, image_size=28).eval()
        assert r(torch.randn(2, 1, 28, 28)).shape == (2, 5)
        v = build_model("vgg11", num_classes=5, in_channels=3, image_size=64).eval()
        assert v(torch.randn(2, 3, 64, 64)).shape == (2, 5)


def test_vgg_rejects_too_small_images() -> None:
    with pytest.raises(ValueError, match="image_size"):
        build_model("vgg11", num_classes=10, image_size=16)


@pytest.mark.parametrize("bad", [0, -1])
def test_build_model_rejects_nonpositive_sizes(bad: int) -> None:
    with pytest.raises(ValueError, match="num_classes"):
        build_model("cnn", num_classes=bad)


def test_unknown_name_raises_with_name_and_choices() -> None:
    with pytest.raises(UnknownModelError) as info:
        build_model("resnet21", num_classes=10)
    message = str(info.value)
    assert "'resnet21'" in message
    for name in sorted(models.MODELS):
        assert name in message
    assert "tv:" in message
    assert isinstance(info.value, ValueError)  # callers may catch plain ValueError


def test_unknown_torchvision_name_raises() -> None:
    with pytest.raises(UnknownModelError) as info:
        build_model("tv:nonexistent", num_classes=10)
    message = str(info.value)
    assert "nonexistent" in message
    assert "list_models" in message


def test_torchvision_model_rejects_non_rgb_input() -> None:
    with pytest.raises(ValueError, match="3-channel"):
        build_model("tv:resnet18", num_classes=10, in_channels=1)


def test_torchvision_model_gets_num_classes_and_no_weights() -> None:
    model = build_model("tv:resnet18", num_classes=3)
    assert model.fc.out_features == 3
    # Two builds with different seeds differ: weights are random, not a downloaded checkpoint.
    torch.manual_seed(1)
    a = build_model("tv:resnet18", num_classes=3).conv1.weight
    torch.manual_seed(2)
    b = build_model("tv:resnet18", num_classes=3).conv1.weight
    assert not torch.equal(a, b)


def test_register_adds_a_buildable_model(isolated_registry: None) -> None:
    @register("tiny_test_model")
    def tiny(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(in_channels, 4, 3), nn.Flatten(), nn.LazyLinear(num_classes)
        ).eval()

    assert "tiny_test_model" in sorted(models.MODELS)
    model = build_model("tiny_test_model", num_classes=4, in_channels=2, image_size=8)
    assert model.training  # build_model switches to train mode whatever the builder returned
    assert model(torch.randn(2, 2, 8, 8)).shape == (2, 4)


def test_duplicate_registration_raises(isolated_registry: None) -> None:
    original = models.MODELS["cnn"]
    with pytest.raises(ValueError, match="already registered"):

        @register("cnn")
        def other(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
            return nn.Linear(1, num_classes)

    assert models.MODELS["cnn"] is original  # the first registration is kept


def test_register_rejects_tv_prefix() -> None:
    with pytest.raises(ValueError, match="tv:"):
        register("tv:resnet18")
