"""The report: what a researcher needs to pick a recipe. One Markdown table of every variant with
its replicates' mean and interval, its difference from the reference variant and the verdict of
the paired test; a sentence saying which variants beat the reference; whether the students are
faster where they run (their ONNX check and speedups, under the conditions they were timed in);
then the figures."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from alphaprune.pipeline.params.schema import Params
from alphaprune.pipeline.params.twins import declaration
from alphaprune.pipeline.report.deployment import deployment
from alphaprune.pipeline.report.stats import (
    BETTER,
    SAME,
    WORSE,
    hidden_by_test_set,
    replicates_to_detect,
)
from alphaprune.pipeline.report.tables import (
    UNSURE,
    details_table,
    diff,
    headline_table,
    mcnemar_table,
)


def verdict_sentence(stats: pd.DataFrame, reference: str, confidence: float) -> str:
    """Which variants beat the reference, which do worse, and which cannot be told apart."""
    others = stats.drop(index=reference)
    groups = {
        v: [f"`{n}`" for n in others.index[others["verdict"] == v]] for v in (BETTER, WORSE, SAME)
    }
    parts = [
        f"Better than `{reference}`: {', '.join(groups[BETTER]) or 'none'}.",
        f"Worse: {', '.join(groups[WORSE]) or 'none'}.",
        f"No detectable difference: {', '.join(groups[SAME]) or 'none'}.",
    ]
    head = (
        f"Against the reference at {confidence:.0%} confidence, holding all "
        f"{len(others)} comparisons together (Holm): "
    )
    return head + " ".join(parts)


def render(
    means: pd.DataFrame,
    stats: pd.DataFrame,
    teachers: pd.DataFrame,
    params: Params,
    figures: list[Path],
    base: Path,
    per_run: pd.DataFrame | None = None,
    twins: pd.DataFrame | None = None,
    untwinned: list[str] | None = None,
) -> str:
    """The Markdown text; figure links are relative to `base` (the report's folder). With
    `per_run` (read_metrics), also the deployment section; with `twins` (stats.compare_pairs of
    the annealed variants and their one-shot twins) or `untwinned` (annealed variants without
    one), the section on what the anneal buys."""
    timed = per_run is not None and "ort_latency_speedup" in per_run.columns
    table = headline_table(means, stats, params, per_run)
    details = details_table(means, stats, params)
    test_size = int(means["test_size"].iloc[0])
    n_runs = int(stats["n"].max())
    reference = params.reference
    level = f"{params.eval.confidence:.0%}"
    teacher_acc = teachers["test_acc"]
    teacher_line = (
        f"**Teacher**: test accuracy {teacher_acc.iloc[0]:.4f}, "
        f"{int(teachers['params'].iloc[0]):,} parameters, "
        f"{int(teachers['epochs'].iloc[0])} epochs."
    )
    if len(teachers) > 1:
        teacher_line = (
            f"**Teachers** ({len(teachers)} seeds): test accuracy "
            f"{', '.join(f'{a:.4f}' for a in teacher_acc)} (mean {teacher_acc.mean():.4f}), "
            f"{int(teachers['params'].iloc[0]):,} parameters, "
            f"{int(teachers['epochs'].iloc[0])} epochs."
        )
    if n_runs > 1:
        how = (
            f"Each variant ran {n_runs} times (replicates: teacher × seed; with several "
            "teachers, a teacher's seeds are averaged and the teachers are the replicates). "
            f"Intervals are {level} Student-t intervals that count both sources of error: "
            "the spread over replicates and the finite test set, which every replicate shares. "
            "`Δ test pp` is the paired difference from the reference, replicate by replicate and "
            "in whole images, with such an interval, and its p-value the matching t-test; the "
            "Δ intervals are not adjusted for the number of comparisons, the verdicts are. The "
            "exact McNemar test of each replicate (same test images) is in the last table."
        )
    else:
        how = (
            f"One run per variant (set `replicates` to run more). Intervals are {level} "
            "Wilson intervals over the test images: they hold for this run, not for the "
            "recipe (another seed moves a student more than that). `Δ test pp` is the "
            "difference from the reference (Wald interval for matched pairs) and its p-value "
            "the exact McNemar test on the two students' predictions for the same images: it "
            "compares these two students, not the recipes."
        )
    lines = [
        "# alphaprune report",
        "",
        f"Data `{params.data.name}`, model `{params.model.name}`, target: {_targets(params)}.",
        "",
        teacher_line,
        "",
        "## Which recipe?",
        "",
        f"Test set: {test_size:,} images; one image is {100 / test_size:.2g} percentage points. "
        + how,
        "",
        verdict_sentence(stats, reference, params.eval.confidence),
        "",
        "## Variants (sorted by mean test accuracy)",
        "",
        "`removed`: fraction of the teacher's parameters the student no longer has. `ORT ×`: "
        "the student's speedup over its teacher in onnxruntime (teacher time ÷ student time, "
        f"{params.latency.threads} thread{'s' if params.latency.threads != 1 else ''}) at the "
        "latency and the throughput batch, the mean over replicates with its spread: the least "
        f"and the greatest of the timing rounds. `{UNSURE}`: the spread is wider than the "
        "speedup's distance from 1, so this timing cannot tell the student from its teacher "
        "(time longer: `latency.seconds`, `latency.rounds`)."
        + (" More in *Deployment* below." if timed else ""),
        "",
        table.to_markdown(),
        "",
        "### Each variant's recipe and other figures",
        "",
        "`recipe`: what the variant changes from `prune`. `params` counts only the weights a "
        "sparse student keeps; `params (dense)` is its dense size. `α reached`: the last α > 0 "
        "trained before α dropped to 0. `α held`: the smallest α down to which every α step "
        "stayed within the tolerance of the teacher's accuracy. `worst α step`: the largest "
        "fall of validation accuracy between consecutive α steps (at their ends, the teacher "
        "at α = 1); `drop at α=0`: the fall at the replacement itself, from the last α > 0 step "
        "to the collapsed student before fine-tuning. Figures without an interval are means "
        "over the replicates.",
        "",
        details.to_markdown(floatfmt=".4g"),
        "",
    ]
    if n_runs > 1:
        lines += [
            "### Exact McNemar p-value per replicate, against the reference",
            "",
            mcnemar_table(stats).to_markdown(floatfmt=".3g"),
            "",
        ]
    untwinned = untwinned or []
    if twins is not None and (len(twins) or untwinned):
        lines += anneal_section(stats, twins, untwinned, params)
    lines += deployment(per_run, means.reindex(index=table.index)) if per_run is not None else []
    lines += ["## Figures", ""]
    for fig in figures:
        # relpath, not relative_to: a report written outside the results folder links back up
        rel = Path(os.path.relpath(Path(fig).resolve(), base.resolve())).as_posix() if base else fig
        lines += [f"### {Path(fig).stem.replace('_', ' ')}", "", f"![{Path(fig).stem}]({rel})", ""]
    return "\n".join(lines)


def anneal_section(
    stats: pd.DataFrame, twins: pd.DataFrame, untwinned: list[str], params: Params
) -> list[str]:
    """Each annealed variant against its one-shot twin (the same recipe with α = 0 from the
    start): both accuracies, the paired difference, the Holm verdict over these pairs; then the
    annealed variants that have no twin in the grid, with the line that would add one."""
    level = f"{params.eval.confidence:.0%}"
    lines = [
        "## Does the anneal pay? Each annealed recipe against its one-shot twin",
        "",
        "A one-shot twin is the same recipe (branch, init, BatchNorm, loss, optimizer, epoch "
        "budget) with α = 0 from the start: its whole budget is the fine-tune, training what "
        "the recipe's fine-tune trains at the fine-tune's lr. Twins are found by how they "
        "train, whatever their names. `Δ` is anneal − twin, paired replicate by replicate, as "
        "against the reference above. The verdicts hold these comparisons together (Holm) as "
        "a family of their own: where a twin is also the reference, its comparison above "
        "shares Δ and the raw p-value but is adjusted within the other family, so the two "
        "adjusted p-values (and, near the threshold, the verdicts) can differ.",
        "",
    ]
    if len(twins):
        order = stats.loc[twins.index, "test_acc"].map(lambda i: i.mean)
        order = order.sort_values(ascending=False, kind="stable").index
        table = pd.DataFrame(index=pd.Index([f"`{a}`" for a in order], name="annealed"))
        table["twin"] = [f"`{twins.loc[a, 'partner']}`" for a in order]
        table["n"] = [twins.loc[a, "comparison"].diff.n for a in order]
        table[f"anneal test acc [{level}]"] = [str(stats.loc[a, "test_acc"]) for a in order]
        table[f"twin test acc [{level}]"] = [
            str(stats.loc[twins.loc[a, "partner"], "test_acc"]) for a in order
        ]
        table[f"Δ pp [{level}]"] = [diff(twins.loc[a, "comparison"]) for a in order]
        table["p (Holm)"] = [
            f"{twins.loc[a, 'p_holm']:.3g} ({twins.loc[a, 'comparison'].test})" for a in order
        ]
        table["verdict"] = [_anneal_verdict(twins.loc[a, "verdict"]) for a in order]
        # detected whatever the other pairs show: Holm's strictest step, (1 − confidence) / m
        strict = 1 - (1 - params.eval.confidence) / len(twins)
        table["replicates to detect"] = [_to_detect(twins.loc[a], strict) for a in order]
        lines += [
            table.to_markdown(),
            "",
            "`replicates to detect`, where no difference was detected: how many replicates the "
            "paired test would need to detect a difference of this size and spread, at the "
            f"level Holm asks of the first of these {len(twins)} comparisons; a figure to plan "
            "a rerun with, not a result. *none* means the test images alone blur a difference "
            "this small, so more seeds on them would not tell.",
            "",
        ]
    if untwinned:
        lines += [
            "Annealed variants without a twin in this grid: "
            + ", ".join(f"`{n}`" for n in untwinned)
            + ". To add one, anchor the recipe in the file that defines the variants and "
            "declare its twin beside it, "
            f"e.g. `{untwinned[0]}: &{untwinned[0]} {{...}}` and then "
            f"`{declaration(untwinned[0])}`.",
            "",
        ]
    return lines


def _to_detect(row, confidence: float) -> str:
    if row["verdict"] != SAME:
        return "–"
    c = row["comparison"]
    if c.diff.n < 2:
        return "unknown: one replicate has no spread"
    if hidden_by_test_set(c, confidence):
        return "none: within the test set's noise"
    n = replicates_to_detect(c, confidence)
    return f"{n}" if n is not None else "over 100"


def _anneal_verdict(verdict: str) -> str:
    return {BETTER: "the anneal pays", WORSE: "the anneal costs accuracy"}.get(verdict, verdict)


TARGET_WORDS = {"params": "parameters", "macs": "MACs", "latency": "measured time"}


def _targets(params) -> str:
    """What the variants remove: one phrase where they all ask the same, else each distinct."""
    asks = list(dict.fromkeys((v.amount, v.target) for v in params.variants.values()))
    words = [f"remove {a:.0%} of the teacher's {TARGET_WORDS[t]}" for a, t in asks]
    return words[0] if len(words) == 1 else "by variant: " + "; ".join(words)
