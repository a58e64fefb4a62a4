"""The report: one Markdown table of every variant (sorted by test accuracy) and the figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from alphaprune.config import Params
from alphaprune.results import TITLES


def recipe_summary(params: Params, name: str) -> str:
    """What a variant changes relative to the `prune` defaults, as `key=value` pairs."""
    base = _flat(params.prune.model_dump(mode="json"))
    mine = _flat(params.variant(name).model_dump(mode="json"))
    diff = [f"{k}={v}" for k, v in mine.items() if base.get(k) != v]
    return ", ".join(diff) or "(defaults)"


def _flat(d: dict) -> dict:
    """{"schedule": {"rate": 0.1}} -> {"schedule.rate": 0.1}"""
    return pd.json_normalize(d).iloc[0].to_dict()


def variant_table(metrics: pd.DataFrame, params: Params) -> pd.DataFrame:
    table = metrics.sort_values("test_acc", ascending=False)[list(TITLES)].rename(columns=TITLES)
    table.insert(0, "recipe", [recipe_summary(params, n) for n in table.index])
    return table


def render(
    metrics: pd.DataFrame, teacher: dict, params: Params, figures: list[Path], base: Path
) -> str:
    """The Markdown text; figure links are relative to `base` (the report's folder)."""
    table = variant_table(metrics, params)
    lines = [
        "# alphaprune report",
        "",
        f"Data `{params.data.name}`, model `{params.model.name}`, target: remove "
        f"{params.prune.amount:.0%} of the teacher's parameters.",
        "",
        f"**Teacher**: test accuracy {teacher['test_acc']:.4f}, {teacher['params']:,} parameters, "
        f"{teacher['epochs']} epochs.",
        "",
        "## Variants (sorted by test accuracy)",
        "",
        "`removed`: fraction of the teacher's parameters the student no longer has. `params` "
        "counts only the weights a sparse student keeps; `params (dense)` is its dense size. "
        "`α reached`: the last α > 0 trained before α dropped to 0. `α held`: the smallest α down "
        "to which every α step stayed within the tolerance of the teacher's accuracy.",
        "",
        table.to_markdown(floatfmt=".4g"),
        "",
        "## Figures",
        "",
    ]
    for fig in figures:
        rel = Path(fig).resolve().relative_to(base.resolve()) if base else fig
        lines += [f"### {Path(fig).stem.replace('_', ' ')}", "", f"![{Path(fig).stem}]({rel})", ""]
    return "\n".join(lines)


def summary(metrics: pd.DataFrame, teacher: dict) -> dict[str, dict[str, float]]:
    """The headline figure, test accuracy to 4 places (one CIFAR-10 test image), of the teacher
    and of each variant: one key per variant under `acc`, so that `dvc exp show --drop '.*'
    --keep '^Experiment$|^acc\\.'` gives every experiment one row of them, for any grid."""
    accs = {"teacher": teacher["test_acc"], **metrics["test_acc"].to_dict()}
    return {"acc": {name: round(float(v), 4) for name, v in accs.items()}}
