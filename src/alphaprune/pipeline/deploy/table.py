"""The latency table of `prune.target: latency` (`alphaprune.budget.latency_table.LatencyTable`),
measured in onnxruntime on the CPU: the whole model, then the model with one channel group
narrowed, for every group and every kept width in steps of `round_to` (at most `widths` of them
per group, spread evenly; the table interpolates between them), and every pair of groups that
meet at a layer narrowed together once, each to about half its width (where plans cut), and, as
a check of the table's prediction, every group at about half its width at once; each exported
to ONNX and timed at one batch on a stated number of threads.

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

from alphaprune.budget.latency_table import Check, LatencyTable, Pair, candidate_widths
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
    """The pairs of groups that share a module with weights (one group's channels are its
    inputs, the other's its outputs: a cost that is the product of both widths). Two streams
    that meet only at a `ChannelMap` (a copy, no arithmetic) are not a pair: their measured
    interaction would be timing noise."""
    members = [{m.module for m in g.members if "channel_map" not in m.fn} for g in groups]
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
    singles = [
        (g.root, kept)
        for g in groups
        for kept in sampled(candidate_widths(g.width, round_to)[:-1], widths)
    ]
    pairs = [  # both at half their width, where plans cut; a group with no narrower width to
        # take has nothing to correct
        {g.root: half(g.width, round_to), h.root: half(h.width, round_to)}
        for g, h in adjacent(groups)
        if g.width > round_to and h.width > round_to
    ]
    # the table's own check: every group that can be cut at about half its width, at once
    check = {g.root: half(g.width, round_to) for g in groups if g.width > round_to}
    models = [model, *(narrowed(model, {r: k}, example) for r, k in singles)]
    models += [narrowed(model, kept, example) for kept in pairs]
    models += [narrowed(model, check, example)] if check else []
    with latency.OtherCpuUse() as other:
        times = timed_in_turns(models, shape, batch, threads, seconds, rounds)
    full, times = times[0], times[1:]
    table: dict[str, dict[int, float]] = {g.root: {} for g in groups}
    spread: dict[str, dict[int, tuple[float, float]]] = {g.root: {} for g in groups}
    for (root, kept), ts in zip(singles, times[: len(singles)], strict=True):
        table[root][kept] = statistics.median(ts)
        spread[root][kept] = (min(ts), max(ts))
    timed_pairs = [
        Pair(tuple(kept), tuple(kept.values()), statistics.median(ts), (min(ts), max(ts)))
        for kept, ts in zip(pairs, times[len(singles) : len(singles) + len(pairs)], strict=True)
    ]
    checked = times[-1] if check else None
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
        pairs=tuple(timed_pairs),
        check=None
        if checked is None
        else Check(check, statistics.median(checked), (min(checked), max(checked))),
        conditions={
            "seconds": seconds,
            "rounds": rounds,
            "models_timed": len(models),
            "other_cpu_use_cores": other.cores,
            **latency.machine(torch.device("cpu")),
        },
    )


def timed_in_turns(models, shape, batch: int, threads: int, seconds: float, rounds: int):
    """Each model's milliseconds in each round (onnxruntime, CPU), the models exported to a
    temporary folder and timed one after another, the order reversed every other round."""
    with tempfile.TemporaryDirectory() as tmp:
        files = [Path(tmp) / f"{i}.onnx" for i in range(len(models))]
        for m, f in zip(models, files, strict=True):
            export.export_onnx(m, shape, f)
        times: list[list[float]] = [[] for _ in models]
        for r in range(rounds):
            for i in list(range(len(models)))[:: 1 if r % 2 == 0 else -1]:
                times[i].append(latency.ort_latency_ms(files[i], shape, batch, threads, seconds))
    return times


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
    teacher, *times = timed_in_turns([model, *students], shape, batch, threads, seconds, rounds)
    return [statistics.median(s / t for s, t in zip(ts, teacher, strict=True)) for ts in times]
