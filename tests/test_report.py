"""The report: what each variant changes, one row per variant sorted by test accuracy, figure
links relative to the report's folder."""

from __future__ import annotations

import pandas as pd

from alphaprune import report
from alphaprune.results import TITLES

TEACHER = {"test_acc": 0.99, "params": 24_058, "epochs": 20}


def _metrics(accs: dict[str, float]) -> pd.DataFrame:
    rows = [{key: 0.5 for key in TITLES} | {"test_acc": a} for a in accs.values()]
    return pd.DataFrame(rows, index=list(accs))


def test_recipe_summary_names_only_what_a_variant_changes(tiny_params):
    params = tiny_params(base={}, deep={"schedule": {"rate": 0.05}, "init": "lsq"},
                         one={"schedule": {"kind": "oneshot"}})  # fmt: skip
    assert report.recipe_summary(params, "base") == "(defaults)"
    assert report.recipe_summary(params, "deep") == "init=lsq, schedule.rate=0.05"
    assert report.recipe_summary(params, "one").startswith("schedule.kind=oneshot")


def test_render_sorts_by_test_accuracy_and_links_figures(tiny_params, tmp_path):
    params = tiny_params(low={}, high={"init": "pretrained"})
    figure = tmp_path / "plots" / "final_accuracy.png"
    text = report.render(_metrics({"low": 0.9, "high": 0.95}), TEACHER, params, [figure],
                         tmp_path)  # fmt: skip
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0].split("|")[2].strip() == "recipe"  # header: name, recipe, then the metrics
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["high", "low"]
    assert all(title in rows[0] for title in TITLES.values())
    assert "![final_accuracy](plots/final_accuracy.png)" in text
    assert "24,058 parameters" in text and "remove 65%" in text
