"""What the figures share (matplotlib, PNG files): saving one, the interval of a metric over
replicates, and a trade-off plot's Pareto front with its labels (the variants on the front named,
the rest grey and keyed, so that 27 variants stay readable)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, also on clusters

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from alphaprune.files import atomic_path  # noqa: E402
from alphaprune.pipeline.report.stats import interval, teacher_clusters  # noqa: E402

ALPHA_CMAP = "viridis"
DPI = 120


def save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return path


def intervals(per_run: pd.DataFrame, key: str, confidence: float) -> pd.DataFrame:
    """Per variant: mean, low, high of `key` (stats.interval: over replicates, or Wilson)."""
    size = int(per_run["test_size"].iloc[0])
    rows = {
        n: interval(
            g[key].to_list(), size, confidence, teacher_clusters(g.index.get_level_values(1))
        )
        for n, g in per_run.groupby(level="variant", sort=False)
    }
    return pd.DataFrame(
        {n: (i.mean, i.low, i.high) for n, i in rows.items()}, index=["mean", "low", "high"]
    ).T


def interval_label(per_run: pd.DataFrame, confidence: float) -> str:
    if per_run.index.get_level_values("replicate").nunique() > 1:
        return f"mean, {confidence:.0%} interval"
    return f"one run, {confidence:.0%} Wilson interval"


def label_points(ax, x: pd.Series, y: pd.Series, width: float) -> None:
    """Name each variant's point (x, y; indexed by variant). Points within 3% of the axis
    `width` at the same y share one label, written to the right of the rightmost, so close
    names do not print over each other."""
    points = pd.DataFrame({"x": x, "y": y}).sort_values("x")
    for level, row in points.groupby("y"):
        for _, group in row.groupby((row["x"].diff() > 0.03 * width).cumsum()):
            ax.annotate(
                "\n".join(group.index),
                (group["x"].max(), level),
                fontsize=7,
                xytext=(7, 0),
                textcoords="offset points",
                va="center",
            )


def front(x: pd.Series, y: pd.Series, smaller_x: bool = False) -> list[str]:
    """The variants (the index) no other variant beats on both axes: higher `y` and higher `x`
    (lower with `smaller_x`), one at least strictly. On a grid of 27 these are the few worth a
    name in a trade-off figure; the rest are points a reader can look up in the report."""
    sx = -x if smaller_x else x
    beaten = [
        n for n in x.index if ((sx >= sx[n]) & (y >= y[n]) & ((sx > sx[n]) | (y > y[n]))).any()
    ]
    return [n for n in x.index if n not in beaten]


def bars(center, low, high) -> list:
    """matplotlib's error bar lengths [below, above] for a point at `center` spanning
    [`low`, `high`], never negative: the mean of equal floats can land an ulp outside their
    range (replicates sharing one timing), and matplotlib refuses a negative length."""
    return [(center - low).clip(lower=0), (high - center).clip(lower=0)]


def points_with_front(ax, x, y, iv, xerr, front_names, label) -> None:
    """Every variant's point (mean, with its interval and `xerr`); those on the front in
    colour and named, the others grey and unnamed (keyed in the legend)."""
    others = [n for n in x.index if n not in front_names]
    for names, colour, text in (
        (others, "0.6", f"{len(others)} other{'s' * (len(others) != 1)} (see the report's table)"),
        (front_names, "steelblue", f"{label}; the best trade-offs"),
    ):
        if not names:
            continue
        ax.errorbar(
            x[names],
            iv.loc[names, "mean"],
            xerr=None if xerr is None else [xerr[0][names], xerr[1][names]],
            yerr=bars(iv.loc[names, "mean"], iv.loc[names, "low"], iv.loc[names, "high"]),
            fmt="o",
            ms=4 if colour == "0.6" else 6,
            color=colour,
            capsize=2,
            zorder=2 if colour == "0.6" else 3,
            label=text,
        )


def label_columns(ax, x: pd.Series, y: pd.Series) -> None:
    """Variants at one speed share an architecture (timed once): name the most accurate of
    each such column, with how many others stand below it."""
    for _, column in y.groupby(x.round(3), sort=False):
        best = column.idxmax()
        more = f" (+{len(column) - 1})" if len(column) > 1 else ""
        ax.annotate(
            f"{best}{more}",
            (x[best], y[best]),
            fontsize=7,
            xytext=(7, 0),
            textcoords="offset points",
            va="center",
        )
