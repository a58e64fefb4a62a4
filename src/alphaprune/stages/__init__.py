"""The training stages as functions, one module each: `pretrain` (the teacher) and `prune` (one
variant's student). Each takes the typed params and the paths the CLI (or a test) passes in, and
writes its outputs atomically. Preparing data is `data.prepare`; evaluation is `evaluate`.
Nothing is re-exported here, so the teacher's stage does not import the pruning code."""

from __future__ import annotations

from collections.abc import Callable

import torch

from alphaprune.runtime import Runtime

OnEpoch = Callable[[dict], None] | None


def generator(runtime: Runtime, seed: int) -> torch.Generator:
    """The random stream of shuffling and augmentation, on the training device."""
    return torch.Generator(device=runtime.device).manual_seed(seed)
