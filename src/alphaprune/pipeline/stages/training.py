"""What the two training stages (`pretrain`: the teacher; `prune`: one variant's student) share:
the curves they write while they run (`Curves`, history.csv and steps.csv), the seeded generator,
and the clean training accuracy. Each stage takes the typed params and the paths the CLI (or a
test) passes in, and writes its outputs atomically."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch

from alphaprune.batches import DeviceData, accuracy
from alphaprune.files import write_csv
from alphaprune.fit import FitResult, StepHook
from alphaprune.runtime import Runtime

OnEpoch = Callable[[dict], None] | None


def clean_train_accuracy(train: DeviceData, runtime: Runtime) -> StepHook:
    """fit's `on_step`: the training accuracy un-augmented and in eval mode at each step's end,
    comparable with the teacher's (for `alpha_hold_train`)."""
    return lambda model: {"train_acc_clean": accuracy(model, train, runtime)}


def generator(runtime: Runtime, seed: int) -> torch.Generator:
    """The random stream of shuffling and augmentation, on the training device."""
    return torch.Generator(device=runtime.device).manual_seed(seed)


class Curves:
    """A run's history.csv (a row per epoch) and steps.csv (a row per finished α step),
    rewritten atomically as they grow, so a notebook, `tail` or `dvc plots show` can follow a run.

    `update` (fit's `on_update`) rewrites at most once per `interval` seconds: a rewrite costs a
    few ms, which every epoch of a tiny model (50 ms epochs) would make ~8% of the run. `write`
    rewrites now; the stage calls it when the run ends."""

    def __init__(self, out_dir: Path, steps: bool = True, interval: float = 1.0):
        self.out_dir, self.steps, self.interval = out_dir, steps, interval
        self.last = -math.inf

    def update(self, result: FitResult) -> None:
        if time.monotonic() - self.last >= self.interval:
            self.write(result)

    def write(self, result: FitResult) -> None:
        write_csv(self.out_dir / "history.csv", result.history)
        if self.steps and result.steps:
            write_csv(self.out_dir / "steps.csv", result.steps)
        self.last = time.monotonic()
