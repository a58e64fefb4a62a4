"""The speed figures: each student's measured speedup against its MAC reduction (where it
runs: onnxruntime and PyTorch on the CPU, CUDA when timed), test accuracy against the
speedup, the front of the trade-off named, and the students of latency targets, one line per
way of choosing channels (`pareto`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alphaprune.pipeline.report.figures import (
    bars,
    front,
    interval_label,
    intervals,
    label_columns,
    plt,
    points_with_front,
    save,
)

SPEEDUPS = {  # latency.json key -> legend label
    "ort_latency_speedup": ("onnxruntime, latency batch", "o"),
    "ort_throughput_speedup": ("onnxruntime, throughput batch", "s"),
    "eager_latency_speedup": ("PyTorch eager, latency batch", "x"),
    "eager_throughput_speedup": ("PyTorch eager, throughput batch", "+"),
    "cuda_latency_speedup": ("CUDA, latency batch", "^"),
    "cuda_throughput_speedup": ("CUDA, large batch", "v"),
}


def speedup_vs_macs(per_run: pd.DataFrame, out: Path) -> Path:
    """Each variant's speedup over the teacher (teacher time ÷ student time; mean and range
    over replicates) against its MAC reduction (teacher MACs ÷ student MACs), per runtime and
    batch. On the diagonal, time falls as fast as the arithmetic; below 1, the student is
    slower. Variants with the same MACs (the same architecture) share one label."""
    numeric = per_run.select_dtypes("number").groupby(level="variant", sort=False)
    mean, low, high = numeric.mean(), numeric.min(), numeric.max()
    series = [k for k in SPEEDUPS if k in mean.columns and mean[k].notna().any()]
    ys = high[series].max(axis=1)  # the top of each variant's highest range
    timed = ys.index[ys.notna()]  # a variant not timed yet has no point
    mean, low, high, ys = mean.loc[timed], low.loc[timed], high.loc[timed], ys[timed]
    fig, ax = plt.subplots(figsize=(8, 6))
    top = max(mean["macs_ratio"].max(), 1.0) * 1.1
    ax.plot([0, top], [0, top], ls="--", color="0.5", lw=1, label="speedup = MAC reduction")
    ax.axhline(1.0, color="crimson", lw=1, label="as fast as the teacher")
    for key in series:
        label, marker = SPEEDUPS[key]
        ax.errorbar(
            mean["macs_ratio"],
            mean[key],
            yerr=bars(mean[key], low[key], high[key]),
            fmt=marker,
            capsize=3,
            alpha=0.8,
            label=label,
        )
    for _, group in mean.groupby(mean["macs_ratio"].round(3), sort=False):
        names = list(group.index)
        shown = names if len(names) <= 3 else [*names[:2], f"+{len(names) - 2} more"]
        text = ", ".join(shown)
        ax.annotate(
            text,
            (group["macs_ratio"].iloc[0], ys[names].max()),
            fontsize=7,
            xytext=(8, 4),
            textcoords="offset points",
            va="bottom",
        )
    ax.set_xlim(0, top * 1.25)  # room for the labels on the right
    ax.set_ylim(0, max(top, ys.max() * 1.15, 1.2))
    ax.set_xlabel("MAC reduction (teacher MACs ÷ student MACs; sparse layers counted dense)")
    ax.set_ylabel("speedup (teacher time ÷ student time)")
    ax.set_title("Is the student faster where it runs?")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return save(fig, out)


def accuracy_vs_speedup(
    per_run: pd.DataFrame, teacher: dict, out: Path, confidence: float = 0.95
) -> Path:
    """The figure a reader decides from: each variant's test accuracy (mean, with its interval)
    against its measured speedup over the teacher in onnxruntime (mean, with the range over
    replicates), at the latency batch and at the throughput batch. The teacher is the star at
    1×; up and to the right is better. Variants at one speed share an architecture: each such
    column names its most accurate variant and how many stand below it (27 names printed over
    each other before); the front (no other both faster and more accurate) is in colour."""
    timed = per_run.dropna(subset=["ort_latency_speedup"])
    numeric = timed.select_dtypes("number").groupby(level="variant", sort=False)
    mean, low, high = numeric.mean(), numeric.min(), numeric.max()
    iv = intervals(timed, "test_acc", confidence).loc[mean.index]
    panels = [(k, SPEEDUPS[k][0]) for k in ("ort_latency_speedup", "ort_throughput_speedup")]
    panels = [(k, label) for k, label in panels if k in mean.columns]
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels, strict=True):
        best = front(mean[key], iv["mean"])
        spread = bars(mean[key], low[key], high[key])
        text = f"{interval_label(timed, confidence)}; speedup: mean, range"
        points_with_front(ax, mean[key], None, iv, spread, best, text)
        right = max(mean[key].max(), 1.0) * 1.3
        label_columns(ax, mean[key], iv["mean"])
        ax.scatter(
            [1.0], [teacher["test_acc"]], marker="*", s=250, color="crimson", label="teacher"
        )
        ax.axvline(1.0, color="crimson", lw=1, ls="--")
        ax.set_xlim(0, right)
        ax.margins(y=0.15)
        ax.set_xlabel(f"speedup over the teacher ({label})")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=7)
    fig.suptitle("Accuracy against measured speed")
    return save(fig, out)


RANKINGS = {  # prune.ranking -> legend label
    "knapsack": "alphaprune: knapsack, least importance per time saved",
    "knapsack_summed": "alphaprune: knapsack, importance summed over each group's layers",
    # cut until the table predicts its `amount` of the teacher's time saved: the knapsack's
    # amount (the same predicted time), or one `alphaprune match` found to measure as fast
    "global": "Torch-Pruning's global ranking, cut to its amount of predicted time",
}


KINDS = {"blocks+channels": "whole blocks and channels"}  # prune.branch -> legend words


def _other_students(ax, per_run: pd.DataFrame, batch: int, confidence: float) -> None:
    """The students of no latency target timed in onnxruntime at `batch` (the latency stage's
    latency or throughput batch): grey squares at their mean speedup and accuracy, named."""
    batches = [k for k in ("latency", "throughput") if f"{k}_batch" in per_run]
    kind = next((k for k in batches if (per_run[f"{k}_batch"] == batch).any()), None)
    if kind is None or f"ort_{kind}_speedup" not in per_run:
        return
    column = f"ort_{kind}_speedup"
    untargeted = per_run["target_measured_speedup"].isna() & per_run[column].notna()
    others = per_run[untargeted & (per_run[f"{kind}_batch"] == batch)]
    if others.empty:
        return
    x = others.groupby(level="variant", sort=False)[column].mean()
    y = intervals(others, "test_acc", confidence).loc[x.index]
    ax.errorbar(
        x,
        y["mean"],
        yerr=bars(y["mean"], y["low"], y["high"]),
        fmt="s",
        color="0.55",
        capsize=3,
        label="other students (no latency target)",
    )
    for name in x.index:
        ax.annotate(
            name,
            (x[name], y.loc[name, "mean"]),
            fontsize=7,
            color="0.35",
            xytext=(6, 4),
            textcoords="offset points",
        )


def pareto(per_run: pd.DataFrame, teacher: dict, out: Path, confidence: float = 0.95) -> Path:
    """The students of `prune.target: latency`: test accuracy (mean, with its interval) against
    the speedup measured at their table's batch (mean, with the range over every round), one
    line per kind and ranking (the knapsack's and Torch-Pruning's fronts, and students that drop
    blocks too; per epochs too where the epochs differ: a front joins students trained alike),
    each point named; the teacher is
    the star at 1x, and each asked speedup a dotted line. The other students timed at that batch
    (a params or MACs budget, whole blocks) are grey squares, named: what the fronts stand
    against at the same speed."""
    timed = per_run.dropna(subset=["target_measured_speedup"])
    iv = intervals(timed, "test_acc", confidence)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    _other_students(ax, per_run, int(timed["target_batch"].iloc[0]), confidence)
    # a latency.json from before the kind was recorded: channels
    kinds = timed["target_kind"] if "target_kind" in timed else None
    timed = timed.assign(target_kind="channels" if kinds is None else kinds.fillna("channels"))
    by_epochs = "epochs" in timed.columns and timed["epochs"].nunique() > 1
    keys = ["target_kind", "target_ranking"] + (["epochs"] if by_epochs else [])
    for key, runs in timed.groupby(keys, sort=False):
        kind, ranking = key[0], key[1]
        label = RANKINGS.get(ranking, ranking)
        if kind != "channels":
            label = f"alphaprune: {KINDS.get(kind, kind)}, the channels by {ranking}"
        if by_epochs:
            label += f" ({int(key[2])} epochs)"
        speed = runs.groupby(level="variant", sort=False)["target_measured_speedup"]
        spans = runs.groupby(level="variant", sort=False)["target_measured_range"]
        x = speed.mean().sort_values()
        low = spans.agg(lambda s: min(r[0] for r in s)).loc[x.index]
        high = spans.agg(lambda s: max(r[1] for r in s)).loc[x.index]
        y = iv.loc[x.index]
        ax.errorbar(
            x,
            y["mean"],
            xerr=bars(x, low, high),
            yerr=bars(y["mean"], y["low"], y["high"]),
            fmt="o-",
            capsize=3,
            label=label,
        )
        for name in x.index:
            ax.annotate(
                name,
                (x[name], y.loc[name, "mean"]),
                fontsize=7,
                xytext=(6, -10),
                textcoords="offset points",
            )
    for asked in timed["target_speedup"].unique():
        ax.axvline(asked, color="0.6", lw=1, ls=":")
    ax.scatter([1.0], [teacher["test_acc"]], marker="*", s=250, color="crimson", label="teacher")
    batch = int(timed["target_batch"].iloc[0])
    ax.set_xlabel(f"speedup over the teacher (onnxruntime, batch {batch}; dotted: asked)")
    ax.set_ylabel(f"test accuracy ({interval_label(timed, confidence)})")
    ax.set_title("Accuracy against measured speed, at the same latency targets")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return save(fig, out)
