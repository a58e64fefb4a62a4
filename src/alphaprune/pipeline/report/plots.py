"""Figures (matplotlib, PNG). Per variant: train/validation accuracy and loss against epoch,
coloured by α, as in the seed's figures, one line per replicate. Across variants: validation
accuracy against α (mean and range over replicates), final test accuracy against the teacher's
(every replicate, and the mean with its interval), test accuracy against parameters and MACs,
and (`speed`) the students' speedup where they run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib import ticker
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D

from alphaprune.files import atomic_path
from alphaprune.pipeline.report.figures import (
    ALPHA_CMAP,
    DPI,
    bars,
    front,
    interval_label,
    intervals,
    label_points,
    plt,  # pyplot, its backend set to Agg (files only) by `figures`
    points_with_front,
    save,
)
from alphaprune.pipeline.report.speed import accuracy_vs_speedup, pareto, speedup_vs_macs


def training_curves(name: str, histories: list[pd.DataFrame], teacher: dict, out: Path) -> Path:
    """Accuracy and loss against epoch, one line per replicate; markers coloured by α (train:
    circles, val: crosses)."""
    # Fixed margins, not a layout engine or a tight bounding box: one figure per variant, and
    # `bbox_inches="tight"` draws each twice (0.30 s a figure against 0.15 s, measured).
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    fig.subplots_adjust(left=0.065, right=0.9, bottom=0.13, top=0.91, wspace=0.28)
    norm = Normalize(0, 1)
    for ax, metric, label in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss")):
        for i, history in enumerate(histories):
            alpha = history["alpha"].fillna(1.0)
            for split, marker in (("train", "o"), ("val", "x")):
                col = f"{split}_{metric}"
                ax.plot(history["epoch"], history[col], color="0.8", lw=1, zorder=1)
                ax.scatter(
                    history["epoch"],
                    history[col],
                    c=alpha,
                    cmap=ALPHA_CMAP,
                    norm=norm,
                    marker=marker,
                    s=14,
                    label=split if i == 0 else None,
                    zorder=2,
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].axhline(teacher["val_acc"], ls="--", color="crimson", lw=1, label="teacher (val)")
    axes[0].legend(loc="best", fontsize=8)
    runs = f" ({len(histories)} replicates)" if len(histories) > 1 else ""
    axes[0].set_title(f"{name}{runs}: accuracy")
    axes[1].set_title(f"{name}: loss")
    colorbar = fig.add_axes((0.915, 0.17, 0.012, 0.7))
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=ALPHA_CMAP), cax=colorbar, label="α")
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return out


def _styles(n: int):
    """n distinguishable (colour, line style) pairs: 20 colours, then dashes."""
    colours = plt.get_cmap("tab20").colors
    return [(colours[i % 20], ("-", "--", ":")[i // 20 % 3]) for i in range(n)]


TWIN_X = -0.012  # where a one-shot twin's diamond sits on the α axis (α = 0 throughout)


def accuracy_vs_alpha(
    steps: dict[str, list[pd.DataFrame]],
    teacher: dict,
    out: Path,
    twins: dict[str, str | None] | None = None,
) -> Path:
    """Validation accuracy and loss at the end of each α step; α runs from 1 down to 0. The line
    is the mean over a variant's replicates at each α, the band their range. Variants with a
    single step (one-shot) have no curve; the one-shot twin of a curve (`twins`: annealed
    variant -> its twin, as `twins.pairs` gives) is a diamond of the curve's colour at α = 0
    (drawn just beside it),
    its replicates' mean validation accuracy: the gap between the curve's end and its diamond
    is what the anneal bought."""
    curves = {n: runs for n, runs in steps.items() if max(len(df) for df in runs) > 1}
    twins = twins or {}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for (name, runs), (colour, ls) in zip(curves.items(), _styles(len(curves)), strict=True):
        twin = twins.get(name)
        if twin in steps:  # a one-shot run's only step is α = 0
            final = pd.concat(steps[twin])["val_acc"].mean()
            # just right of α = 0, beside the curve's last point rather than over it
            axes[0].plot([TWIN_X], [final], "D", color=colour, mec="black", mew=0.6, ms=6, zorder=3)
        # Losses differ between variants (cross-entropy, MSE on logits, KD): compare each to
        # its own value at the first α step, which is unitless.
        both = pd.concat(
            [df.assign(rel_loss=df["val_loss"] / df["val_loss"].iloc[0]) for df in runs]
        )
        by_alpha = both.groupby("alpha", sort=True)
        style = {"ls": ls, "color": colour, "marker": ".", "ms": 4, "lw": 1.2, "label": name}
        for ax, col in ((axes[0], "val_acc"), (axes[1], "rel_loss")):
            stats = by_alpha[col].agg(["mean", "min", "max"])
            if col == "val_acc":  # every curve starts at the teacher (α = 1): the first fall shows
                stats.loc[1.0] = teacher["val_acc"]
                stats = stats.sort_index()
            ax.plot(stats.index, stats["mean"], **style)
            if len(runs) > 1:
                ax.fill_between(
                    stats.index, stats["min"], stats["max"], color=colour, alpha=0.15, lw=0
                )
    axes[0].axhline(teacher["val_acc"], ls="--", color="crimson", lw=1, label="teacher")
    axes[1].set_yscale("log")
    # Plain ratios (1.05, not 1.05×10⁰) on both the major and the minor ticks of the log axis.
    for axis_ticks in (axes[1].yaxis.set_major_formatter, axes[1].yaxis.set_minor_formatter):
        axis_ticks(ticker.FormatStrFormatter("%.3g"))
    labels = ("validation accuracy", "validation loss / its value at the first α step")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xlim(1.02, -0.02)
        ax.set_xlabel("α (1 = teacher, 0 = student)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    n = max(len(runs) for runs in steps.values())
    axes[0].set_title(
        "at the end of each α step" + (f": mean and range of {n} replicates" if n > 1 else "")
    )
    handles, names = axes[1].get_legend_handles_labels()
    line, teacher_name = axes[0].get_legend_handles_labels()
    handles, names = handles + line[-1:], names + teacher_name[-1:]
    if any(twins.get(name) in steps for name in curves):
        handles.append(Line2D([], [], ls="", marker="D", color="grey", mec="black", mew=0.6))
        names.append("one-shot twin (α = 0 throughout)")
    axes[1].legend(
        handles,
        names,
        fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
    )
    return save(fig, out)


def final_accuracy(per_run: pd.DataFrame, teacher: dict, out: Path, confidence=0.95) -> Path:
    """Test accuracy of every student against the teacher's, clean and noisy: each replicate a
    dot, the mean a diamond with its interval; sorted by mean."""
    clean = intervals(per_run, "test_acc", confidence).sort_values("mean")
    order = list(clean.index)
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(order) + 1.8), sharey=True)
    panels = (
        (axes[0], "test_acc", True, "test accuracy", "steelblue"),
        (axes[1], "noisy_test_acc", False, "noisy test accuracy", "darkorange"),
    )
    y = {n: i for i, n in enumerate(order)}
    for ax, col, with_teacher, label, colour in panels:
        iv = intervals(per_run, col, confidence).loc[order]
        ax.errorbar(
            iv["mean"],
            range(len(order)),
            xerr=bars(iv["mean"], iv["low"], iv["high"]),
            fmt="D",
            color=colour,
            ms=5,
            capsize=3,
            label=interval_label(per_run, confidence),
            zorder=3,
        )
        runs = per_run[col].reset_index()
        ax.scatter(
            runs[col], runs["variant"].map(y), s=10, color="0.35", zorder=4, label="each replicate"
        )
        if with_teacher:
            ax.axvline(teacher["test_acc"], ls="--", color="crimson", label="teacher")
        ax.legend(loc="lower right", fontsize=7)
        ax.set_yticks(range(len(order)), order)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    return save(fig, out)


def accuracy_vs_size(per_run: pd.DataFrame, teacher: dict, out: Path, confidence=0.95) -> Path:
    """Mean test accuracy (with its interval) against parameters and against MACs; the teacher
    is the star. Only the variants on the front (no other both smaller and more accurate) are
    named; variants at (nearly) the same point share one label."""
    metrics = per_run.select_dtypes("number").groupby(level="variant", sort=False).mean()
    iv = intervals(per_run, "test_acc", confidence).loc[metrics.index]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    panels = [
        (axes[0], "student_params", "teacher_params", "parameters"),
        (axes[1], "student_macs", "teacher_macs", "MACs per example (sparse layers counted dense)"),
    ]
    for ax, col, teacher_col, label in panels:
        best = front(metrics[col], iv["mean"], smaller_x=True)
        points_with_front(
            ax, metrics[col], None, iv, None, best, interval_label(per_run, confidence)
        )
        width = 1.15 * metrics[teacher_col].iloc[0]
        label_points(ax, metrics.loc[best, col], iv.loc[best, "mean"], width)
        ax.scatter(
            [metrics[teacher_col].iloc[0]],
            [teacher["test_acc"]],
            marker="*",
            s=250,
            color="crimson",
            label="teacher",
            zorder=3,
        )
        ax.set_xlim(0, metrics[teacher_col].iloc[0] * 1.15)
        ax.margins(y=0.15)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    return save(fig, out)


def all_figures(
    histories: dict[tuple[str, str], pd.DataFrame],
    steps: dict[tuple[str, str], pd.DataFrame],
    per_run: pd.DataFrame,
    teacher: dict,
    out_dir: Path,
    confidence: float = 0.95,
    twins: dict[str, str | None] | None = None,
) -> list[Path]:
    """Every figure into `out_dir`; returns their paths. `histories` and `steps` are keyed by
    (variant, replicate), `per_run` (metrics) indexed by them; `teacher` holds the teachers'
    mean test_acc and val_acc; `twins` maps each annealed variant to its one-shot twin."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(dict.fromkeys(v for v, _ in histories))
    grouped_h = {n: [h for (v, _), h in histories.items() if v == n] for n in names}
    grouped_s = {n: [s for (v, _), s in steps.items() if v == n] for n in names}
    paths = [
        training_curves(n, h, teacher, out_dir / f"training_{n}.png") for n, h in grouped_h.items()
    ]
    paths.append(accuracy_vs_alpha(grouped_s, teacher, out_dir / "accuracy_vs_alpha.png", twins))
    paths.append(final_accuracy(per_run, teacher, out_dir / "final_accuracy.png", confidence))
    paths.append(accuracy_vs_size(per_run, teacher, out_dir / "accuracy_vs_size.png", confidence))
    if "ort_latency_speedup" in per_run.columns:  # not in results from before the latency stage
        paths.append(speedup_vs_macs(per_run, out_dir / "speedup_vs_macs.png"))
        out = out_dir / "accuracy_vs_speedup.png"
        paths.append(accuracy_vs_speedup(per_run, teacher, out, confidence))
    if "target_measured_speedup" in per_run.columns:  # students of latency targets
        paths.append(pareto(per_run, teacher, out_dir / "pareto.png", confidence))
    return paths
