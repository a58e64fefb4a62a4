"""The latency table of `prune.target: latency` (`alphaprune.budget.latency_table.LatencyTable`),
measured in onnxruntime on the CPU at one batch on a stated number of threads: the whole model,
and the model with every group narrowed at once: per layer to about three quarters, half and the
least of each group's width (the calibration: how much of the time stays as the layers shrink)
and to widths drawn at random (the check of the table's prediction), per group to about half
(the check); then, as `per` says,

- "layer" (the default; `deploy.layer_grids`): every layer with weights (Conv2d, Linear) alone,
  on the input it gets in the network, on a grid of its input and output widths: the widths the
  groups it reads and writes can take, in steps of `round_to`, at most `widths` of them each
  way, spread evenly (the table interpolates between them); layers of one shape on one input
  are timed once, a layer called twice is two entries; layers of other kinds (pooling,
  activations, additions, copies) are not timed: their time is taken to scale with the layers';
- "group": the model with one channel group narrowed, for every group and every kept width
  (at most `widths` per group), and every pair of groups that meet at a layer narrowed
  together once, each to about half its width (where plans cut). Whole-network timings keep
  the engine's fusions and per-call overheads in the table, but where many groups meet the
  pairs' corrections do not add up (docs/benchmarks.md: up to 57% off at batch 64, where the
  table per layer was within 6.2%).

Weights do not change how long a dense layer takes, so the narrowed models keep the first
channels and the layers are freshly made. Every model is exported to ONNX and timed once per
round, the order reversed every other round (no fixed warm side), each time the median of
repeated passes for `seconds` after a warm-up (`latency.ort_latency_ms`); a table entry is the
median over rounds, its spread the least and greatest.
"""

from __future__ import annotations

import copy
import itertools
import random
import statistics

import torch
from torch import nn

from alphaprune.budget.latency_table import Check, LatencyTable, Pair, candidate_widths
from alphaprune.budget.layer_times import Layer
from alphaprune.budget.plan import candidate_layers
from alphaprune.channels import ChannelGroup, channel_groups
from alphaprune.pipeline.deploy import latency
from alphaprune.pipeline.deploy.layer_grids import layer_grids, sampled
from alphaprune.pipeline.deploy.turns import narrowed, timed_in_turns

ENGINE = "onnxruntime-cpu"
PER = ("layer", "group")  # how a table is measured (see above)


def near(width: int, share: float, round_to: int) -> int:
    """The candidate width below `width` nearest `share` of it (the least: the first)."""
    widths = candidate_widths(width, round_to)[:-1] or [width]
    return min(widths, key=lambda w: abs(w - share * width))


def half(width: int, round_to: int) -> int:
    """The candidate width nearest half of `width` (where a pair is timed)."""
    return near(width, 0.5, round_to)


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
    per: str = "layer",
    batch: int = 64,
    threads: int = 1,
    round_to: int = 8,
    seconds: float = 0.1,
    rounds: int = 3,
    widths: int = 8,
    exclude: list[str] | None = None,
    whole_seconds: float | None = None,
    whole_rounds: int | None = None,
) -> LatencyTable:
    """`model`'s latency table on onnxruntime (CPU) for inputs of `shape` (C, H, W): its groups
    as the channel allocator finds them (`exclude` as the allocator's), timed `per` layer or
    group (see above), at most `widths` timed widths per group (or per layer, each way), each
    model `rounds` times for `seconds`. Per layer, the models timed whole (the teacher, the
    calibration and the check) are timed in turns of their own, `whole_rounds` times for
    `whole_seconds` (unset: as the layers): the teacher's time scales every prediction and the
    share of it that does not shrink is fitted to them, while a layer's timing only enters as a
    ratio to the other layers'. (Timed 1 s x 7, the share moved between builds as much as at
    0.1 s x 3: docs/benchmarks.md.) Per group, the groups' timings are differences from the
    teacher's, so all are timed in the same turns, at `seconds` and `rounds`."""
    whole_seconds = seconds if whole_seconds is None else whole_seconds
    whole_rounds = rounds if whole_rounds is None else whole_rounds
    if per not in PER:
        raise ValueError(f"per: one of {', '.join(PER)}, got {per!r}")
    if widths < 2:
        raise ValueError(f"widths: at least 2 timed widths per group, got {widths}")
    model = copy.deepcopy(model).eval()
    example = torch.zeros(2, *shape)
    _, excluded = candidate_layers(model, exclude, example)
    groups, _ = channel_groups(model, example, excluded)
    # Plans timed whole, every group that can be cut narrowed at once. Per group: the check,
    # at about half of each group's width. Per layer: the calibration, at about three quarters,
    # half and the least (how much of the time stays as the layers shrink:
    # `LatencyTable.fixed`), and the check, each group at a width drawn at random.
    cut = [g for g in groups if g.width > round_to]
    plans: list[dict[str, int]] = []
    if cut and per == "group":
        plans = [{g.root: near(g.width, 0.5, round_to) for g in cut}]
    elif cut:
        shares = (0.75, 0.5, 0.0)
        for kept in ({g.root: near(g.width, share, round_to) for g in cut} for share in shares):
            if kept not in plans:
                plans.append(kept)
        draw = random.Random(0)
        for _ in range(10):  # a plan the calibration did not time, where there is one
            check = {g.root: draw.choice(candidate_widths(g.width, round_to)[:-1]) for g in cut}
            if check not in plans:
                break
        plans.append(check)
    wholes = [model] + [narrowed(model, kept, example) for kept in plans]
    if per == "group":
        singles, pairs = _group_plans(groups, round_to, widths)
        models = [narrowed(model, {r: k}, example) for r, k in singles]
        models += [narrowed(model, kept, example) for kept in pairs]
        shapes = [shape] * len(models)
    else:
        grids, distinct = layer_grids(model, shape, groups, round_to, widths)
        models = [m for m, _ in distinct.values()]
        shapes = [s for _, s in distinct.values()]
    with latency.OtherCpuUse() as other:
        if per == "group":
            shapes = [shape] * len(wholes) + shapes
            times = timed_in_turns(
                [*wholes, *models], shape, batch, threads, seconds, rounds, shapes=shapes
            )
        else:
            times = timed_in_turns(wholes, shape, batch, threads, whole_seconds, whole_rounds)
            times += timed_in_turns(models, shape, batch, threads, seconds, rounds, shapes=shapes)
    full = times[0]

    def plan_ms(t: list[float]) -> float:
        """Per layer, a plan's time is the teacher's times its ratio to the teacher's in each
        round (the median): the share that stays is fitted to those ratios, and a round the
        machine ran slower in moves both alike. Per group, the median of its own timings, as
        the groups' (the table predicts in milliseconds)."""
        if per == "group":
            return statistics.median(t)
        return statistics.median(full) * statistics.median(
            x / y for x, y in zip(t, full, strict=True)
        )

    whole = [
        Check(kept, plan_ms(t), (min(t), max(t)))
        for kept, t in zip(plans, times[1 : 1 + len(plans)], strict=True)
    ]
    times = times[1 + len(plans) :]
    entries: dict = {}
    if per == "group":
        entries = _group_entries(groups, singles, pairs, times)
    else:
        by_key = dict(zip(distinct, times, strict=True))
        entries["layers"] = tuple(
            Layer(
                **spec,
                ms={w: statistics.median(by_key[k]) for w, k in grid.items()},
                spread={w: (min(by_key[k]), max(by_key[k])) for w, k in grid.items()},
            )
            for spec, grid in grids
        )
        entries["groups"] = {}
    return LatencyTable(
        engine=ENGINE,
        batch=batch,
        threads=threads,
        round_to=round_to,
        full_ms=statistics.median(full),
        widths={g.root: g.width for g in groups},
        full_spread=(min(full), max(full)),
        check=whole[-1] if whole else None,
        calibration=tuple(whole[:-1]),
        conditions={
            "seconds": seconds,
            "rounds": rounds,
            **(
                {"whole_seconds": whole_seconds, "whole_rounds": whole_rounds}
                if per == "layer"
                else {}
            ),
            "models_timed": len(wholes) + len(models),
            "other_cpu_use_cores": other.cores,
            **latency.machine(torch.device("cpu")),
        },
        **entries,
    )


def _group_plans(groups: list[ChannelGroup], round_to: int, widths: int):
    """What a table per group times: each group alone at its sampled widths ((root, kept)),
    and each pair of groups that meet at a layer, both at half their width."""
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
    return singles, pairs


def _group_entries(groups, singles, pairs, times) -> dict:
    """The table per group's entries (`groups`, `spread`, `pairs`) from the timings of
    `singles` then `pairs`."""
    table: dict[str, dict[int, float]] = {g.root: {} for g in groups}
    spread: dict[str, dict[int, tuple[float, float]]] = {g.root: {} for g in groups}
    for (root, kept), ts in zip(singles, times[: len(singles)], strict=True):
        table[root][kept] = statistics.median(ts)
        spread[root][kept] = (min(ts), max(ts))
    timed_pairs = tuple(
        Pair(tuple(kept), tuple(kept.values()), statistics.median(ts), (min(ts), max(ts)))
        for kept, ts in zip(pairs, times[len(singles) :], strict=True)
    )
    return {"groups": table, "spread": spread, "pairs": timed_pairs}
