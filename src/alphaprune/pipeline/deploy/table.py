"""The latency table of `prune.target: latency` (`alphaprune.budget.latency.LatencyTable`),
measured in onnxruntime on the CPU: the whole model, then the model with one channel group
narrowed, for every group and every kept width in steps of `round_to` (at most `widths` of them
per group, spread evenly; the table interpolates between them), and every pair of groups that
meet at a layer narrowed together once, each to about half its width (where plans cut); each
exported to ONNX and timed at one batch on a stated number of threads.

Weights do not change how long a dense layer takes, so the narrowed models keep the first
channels. Every model is timed once per round, the order reversed every other round (no fixed
warm side), each time the median of repeated passes for `seconds` after a warm-up
(`latency.ort_latency_ms`); a table entry is the median over rounds, its spread the least and
greatest. Whole-network timings keep the engine's fusions, layouts and per-call overheads in
the table, which a layer timed alone would not.
"""

from __future__ import annotations

import copy
import itertools
import statistics
import tempfile
from pathlib import Path

import torch
from torch import nn

from alphaprune.budget.latency import LatencyTable, Pair, candidate_widths
from alphaprune.budget.plan import candidate_layers
from alphaprune.channels import ChannelGroup, channel_groups, narrow
from alphaprune.pipeline.deploy import export, latency

ENGINE = "onnxruntime-cpu"


def sampled(widths: list[int], most: int) -> list[int]:
    """At most `most` of the candidate `widths` (ascending), evenly spread, always with the
    least (the table cannot extrapolate below its narrowest timing)."""
    if len(widths) <= most:
        return widths
    picks = {round(i * (len(widths) - 1) / (most - 1)) for i in range(most)}
    return [widths[i] for i in sorted(picks)]


def narrowed(model: nn.Module, kept: dict[str, int], example: torch.Tensor) -> nn.Module:
    """A copy of `model` with each group `root` cut to its first `kept[root]` channels."""
    m = copy.deepcopy(model)
    width = {r: m.get_submodule(r).weight.shape[0] for r in kept}
    narrow(m, {r: range(k, width[r]) for r, k in kept.items()}, example)
    return m.eval()


def half(width: int, round_to: int) -> int:
    """The candidate width nearest half of `width` (where a pair is timed)."""
    widths = candidate_widths(width, round_to)[:-1] or [width]
    return min(widths, key=lambda w: abs(2 * w - width))


def adjacent(groups: list[ChannelGroup]) -> list[tuple[ChannelGroup, ChannelGroup]]:
    """The pairs of groups that share a module (one reads the other's channels)."""
    members = [{m.module for m in g.members} for g in groups]
    return [
        (groups[i], groups[j])
        for i, j in itertools.combinations(range(len(groups)), 2)
        if members[i] & members[j]
    ]


def measure_table(
    model: nn.Module,
    shape: tuple[int, ...],
    *,
    batch: int = 64,
    threads: int = 1,
    round_to: int = 8,
    seconds: float = 0.1,
    rounds: int = 3,
    widths: int = 8,
    exclude: list[str] | None = None,
) -> LatencyTable:
    """`model`'s latency table on onnxruntime (CPU) for inputs of `shape` (C, H, W): its groups
    as the channel allocator finds them (`exclude` as the allocator's), at most `widths`
    timed widths per group."""
    if widths < 2:
        raise ValueError(f"widths: at least 2 timed widths per group, got {widths}")
    model = copy.deepcopy(model).eval()
    example = torch.zeros(2, *shape)
    _, excluded = candidate_layers(model, exclude, example)
    groups, _ = channel_groups(model, example, excluded)
    width = {g.root: g.width for g in groups}
    variants: dict[tuple, nn.Module] = {("", 0): model}
    for g in groups:
        for kept in sampled(candidate_widths(g.width, round_to)[:-1], widths):
            variants[g.root, kept] = narrowed(model, {g.root: kept}, example)
    for g, h in adjacent(groups):  # both at half their width, where plans cut
        if g.width <= round_to or h.width <= round_to:
            continue  # a group with no narrower width to take: nothing to correct
        kept = {g.root: half(g.width, round_to), h.root: half(h.width, round_to)}
        variants[g.root, h.root] = narrowed(model, kept, example)
    with tempfile.TemporaryDirectory() as tmp, latency.OtherCpuUse() as other:
        files = {}
        for i, (key, m) in enumerate(variants.items()):
            files[key] = Path(tmp) / f"{i}.onnx"
            export.export_onnx(m, shape, files[key])
        times: dict[tuple[str, int], list[float]] = {k: [] for k in variants}
        for r in range(rounds):
            for key in list(variants)[:: 1 if r % 2 == 0 else -1]:
                ms = latency.ort_latency_ms(files[key], shape, batch, threads, seconds)
                times[key].append(ms)
    full = times.pop(("", 0))
    table: dict[str, dict[int, float]] = {g.root: {} for g in groups}
    spread: dict[str, dict[int, tuple[float, float]]] = {g.root: {} for g in groups}
    pairs = []
    for (root, kept), ts in times.items():
        if isinstance(kept, str):  # a pair
            both = (root, kept)
            at = tuple(half(width[r], round_to) for r in both)
            pairs.append(Pair(both, at, statistics.median(ts), (min(ts), max(ts))))
            continue
        table[root][kept] = statistics.median(ts)
        spread[root][kept] = (min(ts), max(ts))
    return LatencyTable(
        engine=ENGINE,
        batch=batch,
        threads=threads,
        round_to=round_to,
        full_ms=statistics.median(full),
        widths={g.root: g.width for g in groups},
        groups=table,
        spread=spread,
        full_spread=(min(full), max(full)),
        pairs=tuple(pairs),
        conditions={
            "seconds": seconds,
            "rounds": rounds,
            "models_timed": len(variants),
            "other_cpu_use_cores": other.cores,
            **latency.machine(torch.device("cpu")),
        },
    )


def measured_fractions(
    model: nn.Module,
    shape: tuple[int, ...],
    allocations: list[dict[str, int]],
    *,
    batch: int = 64,
    threads: int = 1,
    seconds: float = 0.1,
    rounds: int = 3,
) -> list[float]:
    """For each allocation (group root -> kept width; the first channels kept), its student's
    time as a fraction of the teacher's: the median over rounds of the student's ms ÷ the
    teacher's in that round, all timed in turns, so that a machine busier in one round than
    another moves both alike. What `LatencyTable.predict(kept) / full_ms` predicts."""
    model = copy.deepcopy(model).eval()
    example = torch.zeros(2, *shape)
    students = [narrowed(model, kept, example) for kept in allocations]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, m in enumerate([model, *students]):
            files.append(Path(tmp) / f"{i}.onnx")
            export.export_onnx(m, shape, files[-1])
        ratios: list[list[float]] = [[] for _ in students]
        for r in range(rounds):
            order = list(range(len(files)))[:: 1 if r % 2 == 0 else -1]
            ms = {
                i: latency.ort_latency_ms(files[i], shape, batch, threads, seconds) for i in order
            }
            for i in range(len(students)):
                ratios[i].append(ms[i + 1] / ms[0])
    return [statistics.median(r) for r in ratios]
