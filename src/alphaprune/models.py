"""Model registry: build an untrained classifier from its name.

Every stage of the pipeline (training, pruning, evaluation) refers to a network only by a
string in its config, so that a config file alone says which architecture a result came from
and so that cached results can be keyed on it. This module turns that string into a module.

In the style of timm, a model is a small builder function decorated with ``@register(name)``;
``build_model(name, ...)`` looks it up. Registered here:

* ``cnn`` - a ~24k-parameter CNN for scikit-learn's 8x8 digits (fast enough for tests and CI);
* ``vgg11`` / ``vgg13`` / ``vgg16`` / ``vgg19`` - CIFAR-style VGG with BatchNorm, one linear
  classifier (the widely used pytorch-cifar variant; VGG-16 has ~14.7M parameters);
* ``resnet20`` / ``resnet56`` - the CIFAR ResNets of He et al. (2016) with option-A
  (parameter-free) shortcuts, ~0.27M and ~0.85M parameters.

Any torchvision classification model is also reachable as ``tv:<name>`` (e.g. ``tv:resnet18``),
always without pretrained weights, so building a model never touches the network.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from alphaprune.channelmap import ChannelMap, padded
from alphaprune.errors import UnknownNameError, UserError
from alphaprune.registry import Registry

__all__ = [
    "MODELS",
    "ModelError",
    "UnknownModelError",
    "build_model",
    "register",
]

# A builder takes (num_classes, in_channels, image_size) by keyword and returns a fresh module.
Builder = Callable[..., nn.Module]

_TV_PREFIX = "tv:"


class ModelError(UserError, ValueError):
    """A model cannot be built as asked (its name, or the input it would be given)."""


class UnknownModelError(ModelError, UnknownNameError):
    """Raised when a model name is neither registered nor a known ``tv:<torchvision name>``."""


MODELS: Registry[Builder] = Registry(
    "model", hint=", or tv:<torchvision name>", error=UnknownModelError
)


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator that registers a builder under ``name``; the builder is returned unchanged.

    The builder must accept ``num_classes``, ``in_channels`` and ``image_size`` as keywords.
    """
    if not name or name.startswith(_TV_PREFIX):
        # "tv:" names are resolved by torchvision; a registered one would shadow that silently.
        raise ValueError(f"invalid model name {name!r}: must be non-empty and not start with 'tv:'")

    return MODELS.register(name)


def build_model(
    name: str, num_classes: int, in_channels: int = 3, image_size: int = 32
) -> nn.Module:
    """Build a freshly initialised model (in train mode) by name.

    ``name`` is a registered name (a key of ``MODELS``) or ``tv:<torchvision name>``.
    Raises :class:`UnknownModelError` for an unknown name and ``ValueError`` for bad sizes.
    """
    for arg, value in (
        ("num_classes", num_classes),
        ("in_channels", in_channels),
        ("image_size", image_size),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{arg} must be a positive int, got {value!r}")

    if name.startswith(_TV_PREFIX):
        model = _build_torchvision(name[len(_TV_PREFIX) :], num_classes, in_channels)
    else:
        builder = MODELS.lookup(name)
        model = builder(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
    return model.train()


def _build_torchvision(tv_name: str, num_classes: int, in_channels: int) -> nn.Module:
    # Imported here so that `import alphaprune.models` stays cheap for the CLI and workers
    # that only need the registered models.
    import torchvision

    # Only the top-level classification models: detection/segmentation/video models live in
    # submodules and do not fit a plain `logits = model(images)` classifier interface.
    known = torchvision.models.list_models(module=torchvision.models)
    if tv_name not in known:
        raise UnknownModelError(
            f"unknown torchvision model {tv_name!r} (from 'tv:{tv_name}'); valid names are those "
            "returned by torchvision.models.list_models(module=torchvision.models)"
        )
    if in_channels != 3:
        raise ModelError(
            f"torchvision models take 3-channel input; got in_channels={in_channels} for "
            f"'tv:{tv_name}'"
        )
    # weights=None: never download; every model here is trained from scratch by the pipeline.
    return torchvision.models.get_model(tv_name, weights=None, num_classes=num_classes)


def _init_weights(model: nn.Module) -> None:
    """Kaiming init for convs and linears, identity for BN (as in He et al. 2015/2016)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    # No conv bias: the following BatchNorm's shift makes it redundant.
    return [
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


# --------------------------------------------------------------------------- small CNN


@register("cnn")
def cnn(num_classes: int, in_channels: int = 1, image_size: int = 8) -> nn.Module:
    """Three-conv CNN (~24k params, 0.6M MACs at 1x8x8) for the 8x8 digits; any image_size >= 2
    works. Small on purpose: the whole default grid must run in minutes on a 2-core CPU."""
    if image_size < 2:
        raise ModelError(f"cnn needs image_size >= 2 (it max-pools once), got {image_size}")
    layers: dict[str, nn.Module] = {}
    for i, (cin, cout) in enumerate([(in_channels, 16), (16, 32), (32, 64)], start=1):
        names = (f"conv{i}", f"bn{i}", f"relu{i}")
        layers |= dict(zip(names, _conv_bn_relu(cin, cout), strict=True))
        if i == 2:
            layers["pool"] = nn.MaxPool2d(2)
    # Global pooling makes the classifier independent of the input resolution.
    layers |= {"gap": nn.AdaptiveAvgPool2d(1), "flatten": nn.Flatten()}
    layers["fc"] = nn.Linear(64, num_classes)
    # Named layers, so plans, exclude lists and reports say conv2 rather than 3.
    model = nn.Sequential(OrderedDict(layers))
    _init_weights(model)
    return model


# --------------------------------------------------------------------------- VGG

# Simonyan & Zisserman's configurations A/B/D/E; "M" is a 2x2 max-pool.
_VGG_CONFIGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg13": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ],
    "vgg19": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ],
}


class VGG(nn.Module):
    """CIFAR-style VGG with BatchNorm and a single Linear(512 -> num_classes) classifier."""

    def __init__(self, config: list[int | str], num_classes: int, in_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += _conv_bn_relu(cin, int(item))
                cin = int(item)
        self.features = nn.Sequential(*layers)
        # At 32x32 the features are already 1x1 and this is a no-op; for larger inputs it
        # keeps the classifier at 512 inputs instead of growing with the resolution.
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def _make_vgg(name: str) -> None:
    def builder(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
        # Five 2x max-pools: anything smaller than 32 would shrink to zero size mid-network.
        if image_size < 32:
            raise ModelError(f"{name} needs image_size >= 32 (five 2x pools), got {image_size}")
        return VGG(_VGG_CONFIGS[name], num_classes, in_channels)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"CIFAR-style {name.upper()} with BatchNorm."
    register(name)(builder)


for _name in _VGG_CONFIGS:
    _make_vgg(_name)
del _name


# --------------------------------------------------------------------------- CIFAR ResNet


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with an identity (or option-A) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = (
            # option A: subsample, zero-pad the channels (as a map Torch-Pruning can prune)
            ChannelMap(cin, padded(cin, cout), stride)
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for CIFAR: stem conv, three stages of n blocks (16/32/64), GAP, linear."""

    def __init__(self, n: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages: list[nn.Module] = []
        cin = 16
        for i, cout in enumerate((16, 32, 64)):
            blocks = [
                BasicBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1)
                for j in range(n)
            ]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(64, num_classes)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(torch.flatten(self.pool(out), 1))


@register("resnet20")
def resnet20(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """CIFAR ResNet-20 (n=3, ~0.27M params). Global pooling accepts any image_size."""
    return CifarResNet(3, num_classes, in_channels)


@register("resnet56")
def resnet56(num_classes: int, in_channels: int = 3, image_size: int = 32) -> nn.Module:
    """CIFAR ResNet-56 (n=9, ~0.85M params). Global pooling accepts any image_size."""
    return CifarResNet(9, num_classes, in_channels)
