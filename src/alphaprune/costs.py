"""What one forward pass of one example costs: multiply-accumulates (MACs), the whole model's
from ``torch.utils.flop_counter`` and each Conv2d/Linear layer's as its weights times the
positions it is applied at (the output's height × width for a conv, 1 for a linear map over
one vector). The two agree on a model whose arithmetic is in its convs and linears: the flop
counter counts exactly those (FLOPs / 2), and BatchNorm, activations and additions not at all.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn

from alphaprune.modelfile import recorded_macs


def count_macs(model: nn.Module, example: Tensor) -> int:
    """Multiply-accumulates of one forward pass of one example (`example`'s first row), in eval
    mode on the CPU, from a copy (the model is not changed)."""
    # imported here: the module imports triton (0.1 s), and the first count torch._dynamo
    # (1.5 s), which a stage that reads recorded MACs need not pay
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(model).cpu().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example[:1].cpu())
    return counter.get_total_flops() // 2


def model_macs(model: nn.Module, shape: tuple[int, ...], recipe: dict | None = None) -> int:
    """Multiply-accumulates of one forward pass of one example of `shape`: as `recipe` (the
    model file's) records them, else counted (the flop counter's first use in a process costs
    1.5 s of imports)."""
    recorded = None if recipe is None else recorded_macs(recipe)
    if recorded is not None:
        return recorded
    return count_macs(model, torch.zeros(1, *shape, dtype=next(model.parameters()).dtype))


def layer_positions(model: nn.Module, example: Tensor) -> dict[str, int]:
    """Every Conv2d and Linear layer a forward pass of `example` calls, in the order it first
    calls them, with the positions per example it is applied at (a conv's output height ×
    width; a linear's tokens, 1 for one vector): its MACs are its weights (no bias) times these."""
    positions: dict[str, int] = {}

    def record(module: nn.Module, output: Tensor, name: str) -> None:
        spatial = output.shape[2:] if isinstance(module, nn.Conv2d) else output.shape[1:-1]
        positions.setdefault(name, math.prod(spatial))

    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: record(m, o, name))
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.Linear)
    ]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return positions
