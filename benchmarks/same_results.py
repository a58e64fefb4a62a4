"""Are two results/ trees the same run? Compares every replicate's metrics.json (less timing
fields), history.csv (less `seconds`), steps.csv (less timing columns; columns matched by name)
and predictions.csv, and the teachers' metrics.json. Used for issue 13 (a refactor must not
change a result on the CPU with the same seed):

    python benchmarks/same_results.py before/results after/results
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

TIMING = {"wall_time_s", "teacher_latency_ms", "student_latency_ms"}
TABLES = {"history.csv": {"seconds"}, "steps.csv": {"on_step_seconds"}, "predictions.csv": set()}


def _metrics(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if k not in TIMING}


def _table(path: Path, drop: set[str]) -> pd.DataFrame:
    table = pd.read_csv(path)
    return table.drop(columns=[c for c in table if c in drop]).sort_index(axis=1)


def compare(a: Path, b: Path) -> list[str]:
    """One line per replicate and teacher; lines of differences start with 'DIFF'."""
    lines = []
    for m in sorted(a.glob("teacher/*/metrics.json")) + sorted(a.glob("variants/*/*/metrics.json")):
        rel, other = m.relative_to(a).parent, b / m.relative_to(a)
        diffs = []
        if not other.exists():
            diffs.append("missing")
        else:
            x, y = _metrics(m), _metrics(other)
            diffs += [
                f"{k}: {x.get(k)} vs {y.get(k)}"
                for k in sorted(x.keys() | y.keys())
                if x.get(k) != y.get(k)
            ]
            for name, drop in TABLES.items():
                if (m.parent / name).exists() and not _table(m.parent / name, drop).equals(
                    _table(other.parent / name, drop)
                ):
                    diffs.append(f"{name} differs")
        lines.append(
            f"{'DIFF' if diffs else 'same'} {rel}" + (f": {'; '.join(diffs)}" if diffs else "")
        )
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    args = p.parse_args()
    lines = compare(args.a, args.b)
    print("\n".join(lines))
    same = sum(line.startswith("same") for line in lines)
    print(f"{same} of {len(lines)} identical")
    return 0 if same == len(lines) else 1


if __name__ == "__main__":
    sys.exit(main())
