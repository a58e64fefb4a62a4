"""The latency table of channels' `target: latency`: how long the student takes on the engine it
runs on, predicted from measurements (`budget.latency` plans from it).

The table (`LatencyTable`, measured by `alphaprune.pipeline.deploy.table`) holds the whole
model's time on one engine at one batch and thread count, and for each channel group the
model's time with only that group narrowed, at kept widths in steps of `round_to`: measured as a
whole network, so the engine's own fusions, layouts and overheads are in it. A student's time is
predicted as the teacher's plus each group's change (`LatencyTable.predict`). Where two groups
meet at one layer (a plain chain: a conv's cost is the product of its input and output widths),
narrowing both saves less than the two changes add up to; the table times each such pair
narrowed together once (`Pair`), and the prediction adds the difference back, scaled
bilinearly by how far each group is cut. The table also times one plan it can check itself on
(`Check`: every group at about half its width, all at once) and records how far its prediction
is from that timing (`check_error`): where many groups meet (the CIFAR ResNets' streams each
meet every block's inner width), the pair corrections add up and can be far off.

A table *per layer* (`layer_times.Layer`, the table's `layers`; `latency.table.per: layer`, the
default) times instead each layer with weights alone, on the input it gets in the network, on a
grid of its input and output widths (the widths its groups can take), and predicts a student's
time as the teacher's scaled by the sum of its layers' times over the teacher's
(`LatencyTable.predict`): the time outside the layers (activations, additions, copies) is taken
to shrink in step with them (as first built). Measured on five random students each of
ResNet-20, VGG-11 and ResNet-18 at batch 64 (benchmarks/latency_table.py, docs/benchmarks.md),
that was within 6.2% where the group table was up to 57% off. At batch 1 it holds for ResNet-20
(9.9%), not where the weights outgrow the cache (VGG-11, ResNet-18: students up to 97% faster
than predicted).
But the nine trained students of the CIFAR-10 front (docs/results.md) ran 6-14% below the
speedup it predicted: part of the time does not shrink with the layers (the engine's
per-operator overheads). So a table per layer also times `calibration` plans whole (every group
at about three quarters, half and the least of its width) and fits the share of the teacher's
time that stays (`LatencyTable.fixed`) to them: the prediction is
``full_ms · (fixed + (1 − fixed) · the layers' ratio)``, and its `check` is a plan of widths
drawn at random (docs/benchmarks.md, *The table's calibration*).
"""

from __future__ import annotations

import bisect
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from alphaprune.budget.layer_times import Layer
from alphaprune.budget.plan import BudgetError

# a table whose check is further off than this is named as unreliable: issue 37's goal for a
# table's prediction of a student it did not time (±10%)
CHECK_TOLERANCE = 0.10
# the most of a model's time a table per layer takes to stay as its layers shrink (`fixed`)
MOST_FIXED = 0.9


@dataclass(frozen=True)
class Pair:
    """Two groups that meet at a layer (one's channels are the other's inputs), timed together
    at `kept` widths: `ms`. Where one layer's cost is the product of both widths, narrowing both
    saves less than the sum of narrowing each; the difference at `kept` scales bilinearly with
    how far each is cut (`LatencyTable.predict`)."""

    groups: tuple[str, str]
    kept: tuple[int, int]
    ms: float
    spread: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Check:
    """A plan timed to check the table: each group `kept[root]` wide, at once. With more than
    two groups (or pairs) the table did not time it in parts; with two groups that meet, it
    is their pair, and the check only compares two timings of one model."""

    kept: Mapping[str, int]
    ms: float
    spread: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class LatencyTable:
    """The model's measured milliseconds (`full_ms`) on `engine` at `batch` on `threads`, its
    groups' widths, and either (per layer) `layers`, each layer's grid of timings alone, or (per
    group) `groups`, per group root, kept width -> milliseconds with only that group at that
    width (medians over rounds; `spread`: the least and greatest round, the same keys) and
    `pairs`; `check`, a plan timed whole to check the prediction on."""

    engine: str  # e.g. "onnxruntime-cpu"
    batch: int
    threads: int
    round_to: int
    full_ms: float
    widths: Mapping[str, int]  # group root -> the teacher's width
    groups: Mapping[str, Mapping[int, float]]
    spread: Mapping[str, Mapping[int, tuple[float, float]]] = field(default_factory=dict)
    full_spread: tuple[float, float] = (0.0, 0.0)
    conditions: Mapping[str, object] = field(default_factory=dict)  # machine, seconds, rounds
    pairs: tuple[Pair, ...] = ()
    check: Check | None = None
    layers: tuple[Layer, ...] = ()
    # per layer: plans timed whole that fix how much of the model's time does not shrink with
    # its layers (`fixed`); the check is then another plan
    calibration: tuple[Check, ...] = ()
    # per layer: the layers of the blocks a plan drops (`table_views.without`), which take no
    # time in its prediction; a plan's view of the table, not written to its file
    dropped: frozenset[str] = frozenset()

    @property
    def per(self) -> str:
        """How it was measured: "layer" (each layer alone) or "group" (the network whole)."""
        return "layer" if self.layers else "group"

    @property
    def additive(self) -> bool:
        """Whether the groups' savings add up (a group table without pairs): then one knapsack
        over the groups is exact."""
        return not self.layers and not self.pairs

    def check_error(self) -> float | None:
        """The prediction for the `check` plan over its timing, less 1 (None: none timed)."""
        if self.check is None:
            return None
        return self._predict(self.check.kept, frozenset()) / self.check.ms - 1

    def check_note(self) -> str:
        """A sentence on the check, for logs and errors ("" without one)."""
        if self.check is None:
            return ""
        kept = self.check.kept
        share = sum(kept.values()) / sum(self.widths[r] for r in kept)
        shares = [k / self.widths[r] for r, k in kept.items()]
        how = "every group at about" if max(shares) - min(shares) <= 0.1 else "its groups at"
        return (
            f"a plan with {how} {100 * share:.0f}% of their channels measured "
            f"{self.check.ms:.4g} ms and the table predicts "
            f"{self._predict(kept, frozenset()):.4g} ms "
            f"({100 * self.check_error():+.0f}%)"
        )

    @functools.cached_property
    def fixed(self) -> float:
        """Per layer: the fraction of the teacher's time taken to stay as the layers shrink (the
        engine's per-operator overheads, copies, the input), fitted to the `calibration` plans
        by least squares: the prediction ``full_ms · (fixed + (1 − fixed) · layers' ratio)``
        nearest their timings (as fractions of the teacher's). Within [0, MOST_FIXED]: plans
        timed faster than their layers shrink (caches) are no negative overhead. 0 without
        calibration plans (a table per group, or one from before them)."""
        if not self.layers:
            return 0.0
        # measured − ratio = fixed · (1 − ratio), one equation a plan
        cut = [
            (plan.ms / self.full_ms, self._layers_ratio(plan.kept, frozenset()))
            for plan in self.calibration
        ]
        scale = sum((1.0 - ratio) ** 2 for _, ratio in cut)
        if scale == 0.0:
            return 0.0
        fitted = sum((measured - ratio) * (1.0 - ratio) for measured, ratio in cut) / scale
        return min(MOST_FIXED, max(0.0, fitted))

    def group_ms(self, root: str, kept: int) -> float:
        """The model's time with group `root` alone at `kept` channels: measured, or linear
        between the two measured widths around it (per layer: predicted; in a view without some
        layers, `table_views.without`, with them gone too)."""
        if kept >= self.widths[root]:
            return self.base_ms
        if self.layers:
            return self.predict({root: kept})
        points = sorted({**self.groups[root], self.widths[root]: self.full_ms}.items())
        keys = [w for w, _ in points]
        if kept in self.groups[root]:
            return self.groups[root][kept]
        i = bisect.bisect_left(keys, kept)
        if i == 0:
            raise ValueError(f"{root}: no timing at or below {kept} channels (least {keys[0]})")
        (w0, t0), (w1, t1) = points[i - 1], points[i]
        return t0 + (t1 - t0) * (kept - w0) / (w1 - w0)

    def saving_ms(self, root: str, kept: int) -> float:
        """What narrowing group `root` to `kept` saves of `base_ms`."""
        return self.base_ms - self.group_ms(root, kept)

    @property
    def base_ms(self) -> float:
        """The time before any group is narrowed: the teacher's (`full_ms`), or in a view
        `without` layers, the model's without them."""
        return self.predict({}) if self.dropped else self.full_ms

    def _cut(self, root: str, kept: int, measured: int) -> float:
        """How far `root` is cut at `kept`, as a fraction of the cut to `measured`."""
        full = self.widths[root]
        if measured >= full:  # a pair timed with this group uncut says nothing of cutting it
            return 0.0
        return (full - min(kept, full)) / (full - measured)

    def _interaction(self, pair: Pair) -> float:
        """Measured time of the pair minus what the groups' changes alone add up to."""
        (g, h), (kg, kh) = pair.groups, pair.kept
        return pair.ms - (self.full_ms - self.saving_ms(g, kg) - self.saving_ms(h, kh))

    def predict(self, kept: Mapping[str, int]) -> float:
        """The student's milliseconds when each group `root` keeps `kept[root]` channels (the
        groups not named keep all theirs). Per group: the teacher's, less each group's saving,
        plus each pair's interaction. Per layer: the teacher's, times the sum of the student's
        layers' times over the teacher's (the `dropped` layers' none)."""
        return self._predict(kept, self.dropped)

    def _predict(self, kept: Mapping[str, int], dropped: frozenset[str]) -> float:
        if self.layers:  # nothing cut: the teacher's
            ratio = self._layers_ratio(kept, dropped)
            return self.full_ms * (self.fixed + (1.0 - self.fixed) * ratio)
        return self._group_prediction(kept)

    def _layers_ratio(self, kept: Mapping[str, int], dropped: frozenset[str]) -> float:
        """Per layer: the sum of the student's layers' times over the teacher's."""
        student = sum(
            layer.at(*layer.widths(kept, self.widths))
            for layer in self.layers
            if layer.name not in dropped
        )
        return student / self._teacher_layers_ms

    @functools.cached_property
    def _teacher_layers_ms(self) -> float:
        """The sum of the teacher's layers' times alone (a table per layer)."""
        return sum(layer.at(layer.inputs, layer.outputs) for layer in self.layers)

    def _group_prediction(self, kept: Mapping[str, int]) -> float:
        """`predict` for a table per group."""
        pairs = sum(
            self._interaction(p)
            * self._cut(p.groups[0], kept.get(p.groups[0], self.widths[p.groups[0]]), p.kept[0])
            * self._cut(p.groups[1], kept.get(p.groups[1], self.widths[p.groups[1]]), p.kept[1])
            for p in self.pairs
        )
        return self.full_ms - sum(self.saving_ms(r, k) for r, k in kept.items()) + pairs

    def to_dict(self) -> dict:
        return {
            "engine": self.engine,
            "batch": self.batch,
            "threads": self.threads,
            "round_to": self.round_to,
            "full_ms": self.full_ms,
            "full_spread": list(self.full_spread),
            "widths": dict(self.widths),
            "groups": {r: {str(w): t for w, t in g.items()} for r, g in self.groups.items()},
            "spread": {r: {str(w): list(s) for w, s in g.items()} for r, g in self.spread.items()},
            "conditions": dict(self.conditions),
            "pairs": [
                {
                    "groups": list(p.groups),
                    "kept": list(p.kept),
                    "ms": p.ms,
                    "spread": list(p.spread),
                }
                for p in self.pairs
            ],
            **({"layers": [layer.to_dict() for layer in self.layers]} if self.layers else {}),
            **({} if self.check is None else {"check": _plan_dict(self.check)}),
            **(
                {"calibration": [_plan_dict(plan) for plan in self.calibration]}
                if self.calibration
                else {}
            ),
        }

    @classmethod
    def from_file(cls, path) -> LatencyTable:
        """The table in the JSON file at `path` (`alphaprune table`'s), or a BudgetError saying
        what to do where the file holds none (the table stage's, with latency.table unset)."""
        d = json.loads(Path(path).read_text())
        if d.get("measured") is False:
            raise BudgetError(
                f"{path} holds no table ({d.get('why')}): set latency.table and run the table "
                "stage again"
            )
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: Mapping) -> LatencyTable:
        return cls(
            engine=d["engine"],
            batch=int(d["batch"]),
            threads=int(d["threads"]),
            round_to=int(d["round_to"]),
            full_ms=float(d["full_ms"]),
            widths={r: int(w) for r, w in d["widths"].items()},
            groups={r: {int(w): float(t) for w, t in g.items()} for r, g in d["groups"].items()},
            spread={
                r: {int(w): (float(s[0]), float(s[1])) for w, s in g.items()}
                for r, g in d.get("spread", {}).items()
            },
            full_spread=tuple(d.get("full_spread", (0.0, 0.0))),
            conditions=dict(d.get("conditions", {})),
            pairs=tuple(
                Pair(
                    tuple(p["groups"]),
                    tuple(map(int, p["kept"])),
                    float(p["ms"]),
                    tuple(p.get("spread", (0.0, 0.0))),
                )
                for p in d.get("pairs", ())
            ),
            check=_plan(d.get("check")),
            layers=tuple(Layer.from_dict(layer) for layer in d.get("layers", ())),
            calibration=tuple(_plan(plan) for plan in d.get("calibration", ())),
        )


def _plan(d: Mapping | None) -> Check | None:
    """A `Check` (the check, or a calibration plan) from its dict, None for none."""
    if d is None:
        return None
    return Check(
        {r: int(k) for r, k in d["kept"].items()},
        float(d["ms"]),
        tuple(d.get("spread", (0.0, 0.0))),
    )


def _plan_dict(plan: Check) -> dict:
    return {"kept": dict(plan.kept), "ms": plan.ms, "spread": list(plan.spread)}


def candidate_widths(width: int, round_to: int) -> list[int]:
    """The kept widths a group of `width` channels may take: multiples of `round_to` below it
    (at least one block), then the width itself."""
    return [w for w in range(round_to, width, round_to)] + [width]
