"""Views of a latency table for a plan that drops whole blocks before it cuts channels
(`budget.blocks_channels`): the table without the dropped blocks' layers (`without`), and with its
groups named as the model left names them (`named_as`). Neither measures anything."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from alphaprune.budget.latency_table import Check, LatencyTable
from alphaprune.budget.plan import BudgetError


def without(table: LatencyTable, layers: Iterable[str]) -> LatencyTable:
    """`table`'s view of the model with `layers` gone (a dropped block's): they take no
    time; the rest of the teacher's time (`fixed`, the engine's per-operator overheads) is
    taken to stay, though a dropped block's additions and activations go with it (measured:
    students planned so ran 1% faster to 8% slower than predicted at batch 64,
    docs/results.md). Per layer only."""
    layers = frozenset(layers)
    if not table.layers:
        raise BudgetError(
            "dropping blocks for a latency target needs a table per layer (latency.table.per: "
            "layer): a table per group times no layer alone"
        )
    unknown = layers - {layer.name for layer in table.layers}
    if unknown:
        raise BudgetError(
            f"the latency table has no timings for the layers {', '.join(sorted(unknown))}: "
            "it was measured on another model; measure it again"
        )
    return dataclasses.replace(table, dropped=table.dropped | layers)


def named_as(table: LatencyTable, groups: Iterable) -> LatencyTable:
    """`table` with its groups named by the roots `groups` (`channels.ChannelGroup`s of
    the model planned on) give them: where a block is dropped before the channels are
    planned, a group's root (the first layer writing its channels) can go with it, and
    the group is named by another of its layers. Matched by a layer that writes the group's
    channels in both; a group matched to none keeps its name (and is refused as unknown)."""
    writes = {layer.name: layer.writes for layer in table.layers}
    rename: dict[str, str] = {}
    for g in groups:
        if g.root in table.widths:
            continue
        roots = {r for m in g.members if m.writes for r in writes.get(m.module, {})}
        if len(roots) == 1 and (root := roots.pop()) not in rename:
            rename[root] = g.root
    if not rename:
        return table

    def named(d: Mapping[str, Any]) -> dict[str, Any]:
        return {rename.get(r, r): v for r, v in d.items()}

    def plan(c: Check | None) -> Check | None:
        return None if c is None else dataclasses.replace(c, kept=named(c.kept))

    return dataclasses.replace(
        table,
        widths=named(table.widths),
        groups=named(table.groups),
        spread=named(table.spread),
        layers=tuple(
            dataclasses.replace(layer, reads=named(layer.reads), writes=named(layer.writes))
            for layer in table.layers
        ),
        pairs=tuple(
            dataclasses.replace(p, groups=tuple(rename.get(r, r) for r in p.groups))
            for p in table.pairs
        ),
        check=plan(table.check),
        calibration=tuple(plan(c) for c in table.calibration),
    )
