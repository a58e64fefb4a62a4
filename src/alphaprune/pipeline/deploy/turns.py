"""Narrowed students timed in turns in onnxruntime on the CPU: the teacher with each channel
group cut to its first channels (weights do not change how long a dense layer takes), exported
and timed one after another, the order reversed every other round, and their times as fractions
of a reference's, the median over rounds of each round's ratio (a machine busier in one round
moves both alike). The latency table (`deploy.table`), its benchmarks and `alphaprune match`
(`deploy.match`) time with these."""

from __future__ import annotations

import copy
import statistics
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from alphaprune.channels import narrow
from alphaprune.pipeline.deploy import export, latency


def narrowed(model: nn.Module, kept: dict[str, int], example: torch.Tensor) -> nn.Module:
    """A copy of `model` with each group `root` cut to its first `kept[root]` channels."""
    m = copy.deepcopy(model)
    width = {r: m.get_submodule(r).weight.shape[0] for r in kept}
    narrow(m, {r: range(k, width[r]) for r, k in kept.items()}, example)
    return m.eval()


def timed_in_turns(
    models, shape, batch: int, threads: int, seconds: float, rounds: int, shapes=None
):
    """Each model's milliseconds in each round (onnxruntime, CPU), the models exported to a
    temporary folder and timed one after another, the order reversed every other round.
    `shape`: the input's (no batch); `shapes`: one per model instead."""
    shapes = [tuple(s) for s in shapes] if shapes is not None else [tuple(shape)] * len(models)
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / f"{i}.onnx" for i in range(len(models))]
        for m, f, s in zip(models, files, shapes, strict=True):
            export.export_onnx(m, s, f)
        times: list[list[float]] = [[] for _ in models]
        for r in range(rounds):
            for i in list(range(len(models)))[:: 1 if r % 2 == 0 else -1]:
                ms = latency.ort_latency_ms(files[i], shapes[i], batch, threads, seconds)
                times[i].append(ms)
    return times


def measured_fractions(
    model: nn.Module,
    shape: tuple[int, ...],
    allocations: list[Mapping[str, int] | nn.Module],
    *,
    reference: Mapping[str, int] | nn.Module | None = None,
    batch: int = 64,
    threads: int = 1,
    seconds: float = 0.1,
    rounds: int = 3,
) -> list[float]:
    """For each allocation (group root -> kept width; the first channels kept), its student's
    time as a fraction of the `reference` allocation's student (None: the teacher): the median
    over rounds of the student's ms ÷ the reference's in that round, all timed in turns. Against
    the teacher, what `LatencyTable.predict(kept) / full_ms` predicts. An allocation or the
    reference may instead be a model, a student built already (say, one a prune saved), timed as
    it is."""
    model = copy.deepcopy(model).eval()
    example = torch.zeros(2, *shape)

    def built(kept: Mapping[str, int] | nn.Module) -> nn.Module:
        if isinstance(kept, nn.Module):
            return copy.deepcopy(kept).eval()
        return narrowed(model, dict(kept), example)

    base = model if reference is None else built(reference)
    students = [built(kept) for kept in allocations]
    ref, *times = timed_in_turns([base, *students], shape, batch, threads, seconds, rounds)
    return [statistics.median(s / r for s, r in zip(ts, ref, strict=True)) for ts in times]
