"""BatchNorm recalibration: re-estimate a model's BatchNorm running statistics on training
batches, with no gradients and no parameter changes.

At α = 0 the student's BatchNorm layers see inputs the teacher's statistics were not computed on
(the branches replaced the layers feeding them). When those layers are frozen, or while their
running averages still trail the change, evaluation normalises with the wrong mean and variance;
a few forward passes over training data fix that without training anything.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


@torch.no_grad()
def recalibrate(model: nn.Module, batches: Iterable[Tensor]) -> int:
    """Reset every BatchNorm layer's running statistics and estimate them afresh as the plain
    average over `batches` (momentum None: every batch weighs the same). Only the running
    statistics change; the model's train/eval modes and the layers' momenta are restored.
    Returns the number of batches used."""
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    if not norms:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    model.eval()  # dropout and the like off: only the normalisation layers gather statistics
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    used = 0
    try:
        for x in batches:
            model(x)
            used += 1
    finally:
        for m, training in modes.items():
            m.train(training)
        for m, momentum in momenta.items():
            m.momentum = momentum
    return used
