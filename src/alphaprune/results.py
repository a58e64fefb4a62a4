"""Reading a pipeline's results back: per variant, `results/variants/<v>/` holds metrics.json,
history.csv (one row per epoch) and steps.csv (one row per α step); and the titles of the
metrics' columns, shared by the report and `alphaprune compare`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

TITLES = {  # metrics.json key -> column title
    "test_acc": "test acc",
    "noisy_test_acc": "noisy test acc",
    "agreement": "agreement",
    "achieved": "removed",
    "student_params": "params",
    "student_params_dense": "params (dense)",
    "student_macs": "MACs",
    "student_latency_ms": "latency ms",
    "alpha_reached": "α reached",
    "alpha_hold_train": "α held (train)",
    "alpha_hold_val": "α held (val)",
    "epochs": "epochs",
    "wall_time_s": "train s",
}


def read_metrics(
    names: list[str],
    variants_dir: Path,
    read_text: Callable[[Path], str] = Path.read_text,
    missing_ok: bool = False,
) -> pd.DataFrame:
    """One row of metrics.json per variant, indexed by name, in the order given. `read_text`
    reads a file (e.g. as a DVC experiment has it); with `missing_ok`, a variant without
    metrics (not run yet) is a row of NaN."""
    rows = []
    for name in names:
        try:
            rows.append(json.loads(read_text(variants_dir / name / "metrics.json")))
        except FileNotFoundError:
            if not missing_ok:
                raise
            rows.append({})
    return pd.DataFrame(rows, index=names)


def read_curves(
    names: list[str], variants_dir: Path
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Each variant's history (per epoch) and α steps."""
    histories = {n: pd.read_csv(variants_dir / n / "history.csv") for n in names}
    steps = {n: pd.read_csv(variants_dir / n / "steps.csv") for n in names}
    return histories, steps
