"""The variants side by side: rows, order, differences, and a width that fits a terminal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphaprune.pipeline.params.loader import load_params
from alphaprune.pipeline.report import compare

REPO = Path(__file__).resolve().parents[3]
GRID = list(load_params(REPO / "params.yaml").variants)  # the default grid's real names


def metrics(names, seed=0) -> pd.DataFrame:
    """Plausible metrics.json rows, with the widest values a real run gives."""
    rng = np.random.default_rng(seed)
    n = len(names)
    return pd.DataFrame(
        {
            "test_acc": rng.uniform(0.1, 1, n),
            "noisy_test_acc": rng.uniform(0.1, 1, n),
            "achieved": rng.uniform(0.6, 0.7, n),
            "student_macs": rng.uniform(1e5, 9e9, n),
            "alpha_reached": rng.uniform(0, 1, n),
            "alpha_hold_train": rng.uniform(0, 1, n),
            "alpha_hold_val": rng.uniform(0, 1, n),
            "ort_latency_speedup": rng.uniform(0.1, 99, n),
            "wall_time_s": rng.uniform(1, 99999, n),
            "agreement": 0.9,  # not a headline figure
        },
        index=names,
    )


def test_one_row_per_variant_best_first_with_the_gap_to_the_teacher():
    m = metrics(GRID)
    t = compare.table(m, teacher_acc=0.9)
    assert list(t.index) == list(m["test_acc"].sort_values(ascending=False).index)
    assert "agreement" not in t.columns and len(t.columns) == len(compare.HEADLINE) + 1
    best = t.index[0]
    assert t.loc[best, compare.DELTA] == pytest.approx((m.loc[best, "test_acc"] - 0.9) * 100)


@pytest.mark.parametrize("mode", ["workspace", "versus"])
def test_the_default_grid_fits_120_columns(mode):
    m = metrics(GRID)
    frame = compare.table(m, 0.9) if mode == "workspace" else compare.versus(metrics(GRID, 1), m)
    text = compare.render(frame)
    assert len(text.splitlines()) == len(GRID) + 1
    assert max(map(len, text.splitlines())) <= 120, text


def test_versus_shows_both_sides_and_variants_only_one_side_has():
    a = metrics(["x", "y"], seed=1)
    b = metrics(["y", "z"], seed=2)
    v = compare.versus(a, b)
    assert set(v.index) == {"x", "y", "z"}
    assert v.loc["y", "Δ test"] == pytest.approx(
        (b.loc["y", "test_acc"] - a.loc["y", "test_acc"]) * 100
    )
    assert np.isnan(v.loc["z", "test A"]) and np.isnan(v.loc["x", "test B"])
    text = compare.render(v)
    assert "nan" not in text.lower() and "–" in text  # a missing result is a dash


def test_a_variant_not_run_yet_is_a_row_of_dashes():
    m = metrics(["done"]).reindex(["done", "pending"])
    text = compare.render(compare.table(m, None))
    pending = next(line for line in text.splitlines() if line.startswith("pending"))
    assert set(pending.split()[1:]) == {"–"}
