"""The report's tables: the headline table a screen holds (variant, test accuracy with its
interval, Δ and verdict, the fraction removed, the speedups at batch 1 and 64 with their spread),
the details table beside it (the recipe, every metric), the McNemar p-values, and the summary
`dvc exp show` reads."""

from __future__ import annotations

import math

import pandas as pd

from alphaprune.pipeline.params.schema import Params
from alphaprune.pipeline.report.results import TITLES

INTERVAL_TITLES = {
    "test_acc": "test acc",
    "noisy_test_acc": "noisy test acc",
    "agreement": "agreement",
}


def recipe_summary(params: Params, name: str) -> str:
    """What a variant changes relative to the `prune` defaults, as `key=value` pairs."""
    base = _flat(params.prune.model_dump(mode="json"))
    mine = _flat(params.variant(name).model_dump(mode="json"))
    diff = [f"{k}={v}" for k, v in mine.items() if base.get(k) != v]
    return ", ".join(diff) or "(defaults)"


def _flat(d: dict) -> dict:
    """{"schedule": {"rate": 0.1}} -> {"schedule.rate": 0.1}"""
    return pd.json_normalize(d).iloc[0].to_dict()


HEADLINE_SPEEDUPS = {  # latency.json key -> the headline table's column
    "ort_latency_speedup": "ORT × b{batch}",
    "ort_throughput_speedup": "ORT × b{throughput}",
}
UNSURE = "?"  # a speedup whose spread over rounds is wider than its distance from 1


def headline_table(
    means: pd.DataFrame, stats: pd.DataFrame, params: Params, per_run: pd.DataFrame | None
) -> pd.DataFrame:
    """The table a reader decides from, narrow enough for a screen: per variant (best mean test
    accuracy first) its test accuracy with its interval, the difference from the reference
    with its verdict, the fraction removed, and its onnxruntime speedups at the latency and
    throughput batches with their spread."""
    order = means["test_acc"].sort_values(ascending=False, kind="stable").index
    level = f"{params.eval.confidence:.0%}"
    table = pd.DataFrame(index=order)
    table[f"test acc [{level}]"] = [str(i) for i in stats.loc[order, "test_acc"]]
    table[f"Δ test pp [{level}]"] = [diff(c) for c in stats.loc[order, "comparison"]]
    table["verdict"] = stats.loc[order, "verdict"]
    table["removed"] = means.reindex(index=order)["achieved"].map(lambda v: f"{v:.3f}")
    for key, title in HEADLINE_SPEEDUPS.items():
        title = title.format(batch=params.latency.batch, throughput=params.latency.throughput_batch)
        table[title] = [speedup_cell(per_run, n, key) for n in order]
    return table


def speedup_cell(per_run: pd.DataFrame | None, variant: str, key: str) -> str:
    """A variant's speedup: the mean over its replicates, and its spread (the least and the
    greatest round of any replicate); UNSURE where the spread is wider than the speedup's
    distance from 1, so that the timing cannot tell the student from its teacher."""
    if per_run is None or key not in per_run.columns:
        return "–"
    runs = per_run.loc[variant]
    values = runs[key].dropna()
    if values.empty:
        return "–"
    mean = values.mean()
    spans = runs.get(f"{key}_range")
    if spans is None or spans.dropna().empty:
        return f"{mean:.2f}"
    low = min(r[0] for r in spans.dropna())
    high = max(r[1] for r in spans.dropna())
    flag = f" {UNSURE}" if high - low > abs(mean - 1) else ""
    return f"{mean:.2f} [{low:.2f}, {high:.2f}]{flag}"


def details_table(means: pd.DataFrame, stats: pd.DataFrame, params: Params) -> pd.DataFrame:
    """The rest of each variant's figures, in the headline table's order: what its recipe
    changes, its replicates, the other intervals and the paired test, then the means of the
    other metrics."""
    order = means["test_acc"].sort_values(ascending=False, kind="stable").index
    level = f"{params.eval.confidence:.0%}"
    table = pd.DataFrame(index=order)
    table["recipe"] = [recipe_summary(params, n) for n in order]
    table["n"] = stats.loc[order, "n"]
    for key, title in INTERVAL_TITLES.items():
        if key != "test_acc":
            table[f"{title} [{level}]"] = [str(i) for i in stats.loc[order, key]]
    table["p (Holm)"] = [_p(stats.loc[n]) for n in order]
    rest = [k for k in TITLES if k not in INTERVAL_TITLES and k != "achieved"]
    # reindex: results written before a metric existed have no column for it (shown as nan)
    return pd.concat(
        [table, means.reindex(index=order, columns=rest).rename(columns=TITLES)], axis=1
    )


def diff(comparison) -> str:
    if comparison is None:
        return "–"
    d = comparison.diff
    if math.isnan(d.low):
        return f"{d.mean * 100:+.2f}"
    return f"{d.mean * 100:+.2f} [{d.low * 100:+.2f}, {d.high * 100:+.2f}]"


def _p(row) -> str:
    c = row["comparison"]
    if c is None:
        return "–"
    return f"{row['p_holm']:.3g} ({c.test})"


def mcnemar_table(stats: pd.DataFrame) -> pd.DataFrame:
    """Variant x replicate: the exact McNemar p-value against the reference."""
    rows = {
        n: dict(zip(c.runs, c.mcnemar, strict=True))
        for n, c in stats["comparison"].items()
        if c is not None
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def summary(means: pd.DataFrame, teachers: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The headline figure, test accuracy to 4 places (one CIFAR-10 test image), of the teacher
    and of each variant (means over replicates): one key per variant under `acc`, so that
    `dvc exp show --drop '.*' --keep '^Experiment$|^acc\\.'` gives every experiment one row of
    them, for any grid."""
    accs = {"teacher": teachers["test_acc"].mean(), **means["test_acc"].to_dict()}
    return {"acc": {name: round(float(v), 4) for name, v in accs.items()}}
