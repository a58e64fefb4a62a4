"""A layer of a latency table per layer (`alphaprune.budget.latency_table`): one layer with
weights timed alone on the input it gets in the network, on a grid of its input and output
widths, and its time anywhere between the grid's points (bilinear; a depthwise conv along its
diagonal). `alphaprune.pipeline.deploy.table` measures the grid."""

from __future__ import annotations

import bisect
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Layer:
    """A layer with weights (a Conv2d or a Linear) timed alone on the input it gets in the
    network: `ms[(i, o)]` at `i` input and `o` output features (the median over rounds;
    `spread`: the least and greatest round, the same keys), on a grid of the widths its
    groups can take, `(inputs, outputs)` the teacher's. `reads` / `writes`: the groups whose
    channels are its inputs / outputs, root -> its features per channel of the group (a
    Linear after a flatten reads one per spatial position). `tied`: a depthwise conv, whose
    inputs are its outputs (its grid is the diagonal)."""

    name: str
    inputs: int
    outputs: int
    reads: Mapping[str, int]
    writes: Mapping[str, int]
    ms: Mapping[tuple[int, int], float]
    spread: Mapping[tuple[int, int], tuple[float, float]] = field(default_factory=dict)
    tied: bool = False

    def widths(self, kept: Mapping[str, int], full: Mapping[str, int]) -> tuple[int, int]:
        """Its (inputs, outputs) when each group `root` keeps `kept[root]` of its `full[root]`
        channels (the groups not named keep all theirs)."""

        def less(groups: Mapping[str, int]) -> int:
            return sum(
                (full[r] - min(kept.get(r, full[r]), full[r])) * n for r, n in groups.items()
            )

        return self.inputs - less(self.reads), self.outputs - less(self.writes)

    @functools.cached_property
    def _axes(self) -> tuple[list[int], list[int]]:
        """The grid's input and output widths, ascending (a plan predicts thousands of times)."""
        return sorted({i for i, _ in self.ms}), sorted({o for _, o in self.ms})

    def at(self, inputs: int, outputs: int) -> float:
        """Its milliseconds at (`inputs`, `outputs`): timed, or bilinear between the timings
        around it (linear along the diagonal where `tied`)."""
        if (inputs, outputs) in self.ms:
            return self.ms[inputs, outputs]
        ins, outs = self._axes
        if self.tied:
            (i0, i1), fi = bracket(ins, inputs, f"{self.name} at {inputs} channels")
            return self.ms[i0, i0] + fi * (self.ms[i1, i1] - self.ms[i0, i0])
        (i0, i1), fi = bracket(ins, inputs, f"{self.name} at {inputs} inputs")
        (o0, o1), fo = bracket(outs, outputs, f"{self.name} at {outputs} outputs")
        low = self.ms[i0, o0] + fo * (self.ms[i0, o1] - self.ms[i0, o0])
        high = self.ms[i1, o0] + fo * (self.ms[i1, o1] - self.ms[i1, o0])
        return low + fi * (high - low)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "reads": dict(self.reads),
            "writes": dict(self.writes),
            "tied": self.tied,
            # rows: inputs, outputs, ms[, least, greatest]
            "grid": [[i, o, t, *self.spread.get((i, o), ())] for (i, o), t in self.ms.items()],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Layer:
        grid = [(int(row[0]), int(row[1]), *map(float, row[2:])) for row in d["grid"]]
        return cls(
            name=d["name"],
            inputs=int(d["inputs"]),
            outputs=int(d["outputs"]),
            reads={r: int(n) for r, n in d["reads"].items()},
            writes={r: int(n) for r, n in d["writes"].items()},
            ms={(row[0], row[1]): row[2] for row in grid},
            spread={(row[0], row[1]): (row[3], row[4]) for row in grid if len(row) == 5},
            tied=bool(d.get("tied", False)),
        )


def bracket(points: list[int], x: int, what: str) -> tuple[tuple[int, int], float]:
    """The two of the ascending `points` around `x` and how far `x` lies from the first to the
    second (0 where `x` is a point)."""
    if x in points:
        return (x, x), 0.0
    i = bisect.bisect_left(points, x)
    if i == 0 or i == len(points):
        raise ValueError(f"{what}: outside the timed widths {points[0]}..{points[-1]}")
    lo, hi = points[i - 1], points[i]
    return (lo, hi), (x - lo) / (hi - lo)
