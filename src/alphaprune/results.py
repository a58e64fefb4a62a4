"""Reading a pipeline's results back: per variant, `results/variants/<v>/` holds metrics.json,
history.csv (one row per epoch) and steps.csv (one row per α step)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd


def read_metrics(names: list[str], variants_dir: Path) -> pd.DataFrame:
    """One row of metrics.json per variant, indexed by name, in the order given."""
    rows = [json.loads((variants_dir / n / "metrics.json").read_text()) for n in names]
    return pd.DataFrame(rows, index=names)


def read_curves(
    names: list[str], variants_dir: Path
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Each variant's history (per epoch) and α steps."""
    histories = {n: pd.read_csv(variants_dir / n / "history.csv") for n in names}
    steps = {n: pd.read_csv(variants_dir / n / "steps.csv") for n in names}
    return histories, steps
