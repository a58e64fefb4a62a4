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
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
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
    axes[0].legend(loc="lower left")
    axes[0].set_title(f"{name}: accuracy")
    axes[1].set_title(f"{name}: loss")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=ALPHA_CMAP), ax=axes, label="α",
                 shrink=0.9)  # fmt: skip
    with atomic_path(out) as tmp:  # colorbar with tight_layout: save without it
        fig.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight")
    plt.close(fig)
    return out


def accuracy_vs_alpha(steps: dict[str, pd.DataFrame], teacher: dict, out: Path) -> Path:
    """Validation accuracy at the end of each α step, per variant; α runs from 1 down to 0."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, df in steps.items():
        ax.plot(df["alpha"], df["val_acc"], marker=".", label=name)
    ax.axhline(teacher["val_acc"], ls="--", color="crimson", lw=1, label="teacher")
    ax.set_xlim(1.02, -0.02)
    ax.set_xlabel("α (1 = teacher, 0 = student)")
    ax.set_ylabel("validation accuracy at the end of the α step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, out)


def final_accuracy(metrics: pd.DataFrame, teacher: dict, out: Path) -> Path:
    """Test accuracy of every student, sorted, against the teacher's."""
    df = metrics.sort_values("test_acc")
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(df) + 1.5))
    ax.barh(df.index, df["test_acc"], color="steelblue", label="student")
    ax.scatter(
        df["noisy_test_acc"], df.index, color="orange", zorder=3, label="student, noisy test"
    )
    ax.axvline(teacher["test_acc"], ls="--", color="crimson", label="teacher")
    low = min(df["test_acc"].min(), df["noisy_test_acc"].min(), teacher["test_acc"])
    ax.set_xlim(max(0.0, low - 0.05), 1.0)
    ax.set_xlabel("test accuracy")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out)


def accuracy_vs_size(metrics: pd.DataFrame, teacher: dict, out: Path) -> Path:
    """Test accuracy against parameters and against MACs; the teacher is the star."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    t_params = metrics["teacher_params"].iloc[0]
    t_macs = metrics["teacher_macs"].iloc[0]
    panels = [
        (axes[0], "student_params", t_params, "parameters"),
        (axes[1], "student_macs", t_macs, "MACs per example"),
    ]
    for ax, col, t_val, label in panels:
        ax.scatter(metrics[col], metrics["test_acc"], color="steelblue")
        for name, row in metrics.iterrows():
            ax.annotate(name, (row[col], row["test_acc"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")  # fmt: skip
        ax.scatter([t_val], [teacher["test_acc"]], marker="*", s=200, color="crimson",
                   label="teacher")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel(f"{label} (log scale)")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3, which="both")
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
