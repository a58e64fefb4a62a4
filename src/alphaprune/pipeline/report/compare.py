"""The variants side by side in a terminal: one row per variant with the headline figures, for
the workspace's results or for one DVC experiment against another. (The report has every
column; this is what fits in 120 characters.)"""

from __future__ import annotations

import pandas as pd

from alphaprune.pipeline.report.results import TITLES

HEADLINE = [
    "test_acc",
    "noisy_test_acc",
    "achieved",
    "student_macs",
    "alpha_reached",
    "alpha_hold_train",
    "alpha_hold_val",
    "ort_latency_speedup",
    "wall_time_s",
]
SHORT = {
    "noisy_test_acc": "noisy acc",
    "alpha_hold_train": "α held tr",
    "alpha_hold_val": "α held val",
    "ort_latency_speedup": "ORT ×",  # speedup: teacher ÷ student time, onnxruntime, latency.batch
}
DELTA = "Δ pp"  # percentage points


def _title(key: str) -> str:
    return SHORT.get(key) or TITLES[key]


def table(metrics: pd.DataFrame, teacher_acc: float | None) -> pd.DataFrame:
    """The headline figures per variant, best test accuracy first, with the difference to the
    teacher's test accuracy in percentage points."""
    rows = metrics.reindex(columns=HEADLINE).sort_values("test_acc", ascending=False)
    out = rows.rename(columns=_title)
    if teacher_acc is not None:
        out.insert(1, DELTA, (rows["test_acc"] - teacher_acc) * 100)
    return out


def versus(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Experiment `b` against `a`, per variant (b's best first): both test and noisy
    accuracies with b − a in percentage points, then b's other headline figures but α reached
    (it matters to plateau variants only, and the 120 columns hold 24 variant names)."""
    b = b.reindex(list(b.index) + [n for n in a.index if n not in b.index], columns=HEADLINE)
    b = b.sort_values("test_acc", ascending=False)
    a = a.reindex(index=b.index, columns=HEADLINE)
    out = pd.DataFrame(index=b.index)
    for key, short in (("test_acc", "test"), ("noisy_test_acc", "noisy")):
        out[f"{short} A"], out[f"{short} B"] = a[key], b[key]
        out[f"Δ {short}"] = (b[key] - a[key]) * 100
    for key in HEADLINE[2:]:
        if key != "alpha_reached":
            out[_title(key)] = b[key]
    return out


def render(frame: pd.DataFrame) -> str:
    """Fixed-width text: accuracies to 4 places, α to 3, MACs in k/M/G, differences signed, a
    dash where a variant has no result."""

    def fmt(column: str):
        if column.startswith("Δ"):
            return "{:+.2f}".format
        if column == _title("student_macs"):
            return _si
        if column == _title("wall_time_s"):  # whole seconds: the 120 columns hold 24 variants
            return "{:.0f}".format
        if column == _title("ort_latency_speedup"):
            return "{:.2f}".format
        if column.startswith("α"):
            return "{:.3f}".format
        return "{:.4f}".format

    formatters = {c: fmt(c) for c in frame.columns}
    return frame.to_string(formatters=formatters, na_rep="–", index_names=False)


def _si(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.1f}{unit}"
    return f"{v:.0f}"
