"""Checkpoints of a fit: everything needed to resume after the last finished α step, bit for bit.

A checkpoint holds the model's and optimizer's state, both random streams (the fit's generator
and torch's global one), the history so far and the step and epoch to resume at, tagged with
the *fingerprint* of the configuration it belongs to. Writes are atomic; reads run no pickled
code (`torchfiles.safe_load`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alphaprune.torchfiles import safe_load, torch_save

log = logging.getLogger(__name__)
VERSION = 1


@dataclass
class Resumed:
    """Where a resumed fit picks up: the next step, the epochs done, the history so far."""

    next_step: int
    epoch: int
    history: list[dict]
    steps: list[dict]
    seconds: float


def save(
    path: Path,
    fingerprint: str,
    next_step: int,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    result,
) -> None:
    """Write the state after the step before `next_step` (`epoch` epochs done); `result` is the
    fit's result so far (its history, steps and seconds)."""
    history, steps, seconds = result.history, result.steps, result.seconds
    torch_save(
        path,
        {
            "format_version": VERSION,
            "fingerprint": fingerprint,
            "next_step": next_step,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "result": json.dumps({"history": history, "steps": steps, "seconds": seconds}),
        },
    )


def resume(
    path: Path,
    fingerprint: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> Resumed | None:
    """Restore `model`, `optimizer`, `generator` and torch's RNG from `path` if it holds a
    checkpoint of this configuration; None (start over) if there is none, or it belongs to
    another configuration or format version. Writes are atomic, so an unreadable checkpoint (or
    a file that is not a checkpoint at all) was damaged or put there afterwards: that stops the
    run, naming the file, rather than being overwritten quietly."""
    if not path.exists():
        return None
    state = safe_load(
        path, "checkpoint", format=None, version=None, hint="delete it to start this run over"
    )
    if state.get("format_version") != VERSION:
        log.warning(
            "checkpoint %s has format version %s, this alphaprune writes %s; starting over",
            path,
            state.get("format_version"),
            VERSION,
        )
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("checkpoint %s belongs to another configuration; starting over", path)
        return None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    saved = json.loads(state["result"])
    return Resumed(
        state["next_step"], state["epoch"], saved["history"], saved["steps"], saved["seconds"]
    )
