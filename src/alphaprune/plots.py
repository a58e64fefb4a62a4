"""Figures (matplotlib, PNG). Per variant: train/validation accuracy and loss against epoch,
coloured by α, as in the seed's figures. Across variants: validation accuracy against α, final
test accuracy against the teacher's, and test accuracy against parameters and MACs."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display, also on clusters

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402

from alphaprune.files import atomic_path  # noqa: E402

ALPHA_CMAP = "viridis"
DPI = 120


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    return path


def training_curves(name: str, history: pd.DataFrame, teacher: dict, out: Path) -> Path:
    """Accuracy and loss against epoch; markers coloured by α (train: circles, val: crosses)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"wspace": 0.28})
    norm = Normalize(0, 1)
    alpha = history["alpha"].fillna(1.0)
    for ax, metric, label in ((axes[0], "acc", "accuracy"), (axes[1], "loss", "loss")):
        for split, marker in (("train", "o"), ("val", "x")):
            col = f"{split}_{metric}"
            ax.plot(history["epoch"], history[col], color="0.8", lw=1, zorder=1)
            ax.scatter(history["epoch"], history[col], c=alpha, cmap=ALPHA_CMAP, norm=norm,
                       marker=marker, s=18, label=split, zorder=2)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].axhline(teacher["val_acc"], ls="--", color="crimson", lw=1, label="teacher (val)")
    axes[0].legend(loc="best", fontsize=8)
    axes[0].set_title(f"{name}: accuracy")
    axes[1].set_title(f"{name}: loss")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=ALPHA_CMAP), ax=axes, label="α",
                 shrink=0.9)  # fmt: skip
    with atomic_path(out) as tmp:  # colorbar with tight_layout: save without it
        fig.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight")
    plt.close(fig)
    return out


def _styles(n: int):
    """n distinguishable (colour, line style) pairs: 20 colours, then dashes."""
    colours = plt.get_cmap("tab20").colors
    return [(colours[i % 20], ("-", "--", ":")[i // 20 % 3]) for i in range(n)]


def accuracy_vs_alpha(steps: dict[str, pd.DataFrame], teacher: dict, out: Path) -> Path:
    """Validation accuracy and loss at the end of each α step; α runs from 1 down to 0.
    Variants with a single step (one-shot) have no curve and are left out."""
    curves = {n: df for n, df in steps.items() if len(df) > 1}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    for (name, df), (colour, ls) in zip(curves.items(), _styles(len(curves)), strict=True):
        style = {"ls": ls, "color": colour, "marker": ".", "ms": 4, "lw": 1.2, "label": name}
        axes[0].plot(df["alpha"], df["val_acc"], **style)
        # Losses differ between variants (cross-entropy, MSE on logits, KD): compare each to
        # its own value at the first α step, which is unitless.
        axes[1].plot(df["alpha"], df["val_loss"] / df["val_loss"].iloc[0], **style)
    axes[0].axhline(teacher["val_acc"], ls="--", color="crimson", lw=1, label="teacher")
    axes[1].set_yscale("log")
    labels = ("validation accuracy", "validation loss / its value at the first α step")
    for ax, label in zip(axes, labels, strict=True):
        ax.set_xlim(1.02, -0.02)
        ax.set_xlabel("α (1 = teacher, 0 = student)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_title("at the end of each α step")
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(fig, out)


def final_accuracy(metrics: pd.DataFrame, teacher: dict, out: Path) -> Path:
    """Test accuracy of every student (sorted) against the teacher's, clean and noisy."""
    df = metrics.sort_values("test_acc")
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(df) + 1.6), sharey=True)
    panels = ((axes[0], "test_acc", "teacher_test_acc", "test accuracy", "steelblue"),
              (axes[1], "noisy_test_acc", None, "noisy test accuracy", "darkorange"))  # fmt: skip
    for ax, col, teacher_col, label, colour in panels:
        ax.hlines(df.index, df[col].min(), df[col], color="0.85", lw=1)
        ax.plot(df[col], df.index, "o", color=colour)
        if teacher_col:
            ax.axvline(teacher["test_acc"], ls="--", color="crimson", label="teacher")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    return _save(fig, out)


def accuracy_vs_size(metrics: pd.DataFrame, teacher: dict, out: Path) -> Path:
    """Test accuracy against parameters and against MACs; the teacher is the star. Variants
    at (nearly) the same point share one label."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    panels = [
        (axes[0], "student_params", "teacher_params", "parameters"),
        (axes[1], "student_macs", "teacher_macs", "MACs per example (sparse layers counted dense)"),
    ]
    for ax, col, teacher_col, label in panels:
        ax.scatter(metrics[col], metrics["test_acc"], color="steelblue", zorder=2)
        # Points within 3% of the axis width at the same accuracy share one label (written to
        # the right of the rightmost), so close names do not print over each other.
        gap = 0.03 * 1.15 * metrics[teacher_col].iloc[0]
        for y, row in metrics.sort_values(col).groupby("test_acc"):
            for _, group in row.groupby((row[col].diff() > gap).cumsum()):
                ax.annotate("\n".join(group.index), (group[col].max(), y), fontsize=7,
                            xytext=(7, 0), textcoords="offset points", va="center")  # fmt: skip
        ax.scatter([metrics[teacher_col].iloc[0]], [teacher["test_acc"]], marker="*", s=250,
                   color="crimson", label="teacher", zorder=3)  # fmt: skip
        ax.set_xlim(0, metrics[teacher_col].iloc[0] * 1.15)
        ax.margins(y=0.15)
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    return _save(fig, out)


def all_figures(
    histories: dict[str, pd.DataFrame],
    steps: dict[str, pd.DataFrame],
    metrics: pd.DataFrame,
    teacher: dict,
    out_dir: Path,
) -> list[Path]:
    """Every figure into `out_dir`; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [
        training_curves(n, h, teacher, out_dir / f"training_{n}.png") for n, h in histories.items()
    ]
    paths.append(accuracy_vs_alpha(steps, teacher, out_dir / "accuracy_vs_alpha.png"))
    paths.append(final_accuracy(metrics, teacher, out_dir / "final_accuracy.png"))
    paths.append(accuracy_vs_size(metrics, teacher, out_dir / "accuracy_vs_size.png"))
    return paths
