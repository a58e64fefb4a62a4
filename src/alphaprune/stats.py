"""Statistics for telling variants apart: intervals, paired comparisons and a verdict.

- A figure measured on several replicates (seeds) gets its mean, standard deviation and a
  Student-t interval over the replicates; a figure of one run, which is a proportion of the test
  images, gets a Wilson interval from the test-set size instead.
- A variant is compared with a reference variant replicate by replicate (same teacher, same
  seed, same test images): the paired difference of test accuracy with its t interval, and per
  replicate an exact McNemar test on the two students' predictions for the same images.
- The verdict per variant (better, worse, no detectable difference) tests the paired
  difference over replicates (paired t-test) when there are at least two, else the exact
  McNemar test of the single replicate, and holds the family of comparisons to the stated
  level with Holm's step-down correction.

scipy and statsmodels do the distributions; this module only chooses and combines them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

BETTER, WORSE, SAME = "better", "worse", "no detectable difference"


@dataclass(frozen=True)
class Interval:
    """A figure with its interval: `mean` over `n` replicates (or the single run's value)."""

    mean: float
    low: float
    high: float
    n: int
    sd: float = math.nan  # over replicates; NaN for a single run
    method: str = "t"  # t (over replicates) | wilson (one run, over test images)

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}]"


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    low, high = proportion_confint(successes, trials, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean, standard deviation and Student-t interval of replicate values (n >= 2)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {len(x)}")
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    if sd == 0:
        return Interval(mean, mean, mean, len(x), 0.0)
    low, high = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=sd / math.sqrt(len(x)))
    return Interval(mean, float(low), float(high), len(x), sd)


def interval(values: Sequence[float], test_size: int, confidence: float = 0.95) -> Interval:
    """An interval of a proportion of the `test_size` test images (an accuracy): over replicates
    (Student t, at least as wide as the test set's Wilson interval, within [0, 1]) when there
    are several; for one run, Wilson over the images."""
    if len(values) < 2:
        (value,) = values
        low, high = wilson(round(value * test_size), test_size, confidence)
        return Interval(float(value), low, high, 1, method="wilson")
    t = t_interval(values, confidence)
    # Replicates that agree closely (on a few hundred images, often exactly) give a t interval
    # narrower than the test set can resolve: it is widened to the Wilson interval of the mean.
    low, high = wilson(round(t.mean * test_size), test_size, confidence)
    return Interval(t.mean, max(min(t.low, low), 0.0), min(max(t.high, high), 1.0), t.n, t.sd)


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """p-value of the exact McNemar test that two classifiers, scored on the same images, have
    the same accuracy (only the images exactly one of them gets right count)."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"predictions of different test sets: {a.shape} vs {b.shape}")
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    return float(mcnemar(table, exact=True).pvalue)


@dataclass(frozen=True)
class Comparison:
    """One variant against the reference, over the replicates both have."""

    diff: Interval  # paired difference of test accuracy, variant - reference
    p: float  # the p-value the verdict uses (paired t over replicates, or McNemar for one)
    test: str  # "paired t" | "McNemar"
    mcnemar: tuple[float, ...]  # exact McNemar p-value of each replicate
    runs: tuple[str, ...] = ()  # the replicates' names, in that order


def compare(
    acc: Sequence[float],
    reference_acc: Sequence[float],
    correct: Sequence[np.ndarray],
    reference_correct: Sequence[np.ndarray],
    confidence: float = 0.95,
) -> Comparison:
    """A variant against the reference: both sequences in the same replicate order."""
    if not len(acc) == len(reference_acc) == len(correct) == len(reference_correct) >= 1:
        raise ValueError("compare needs the same replicates (at least one) for both variants")
    pvals = tuple(mcnemar_exact(a, b) for a, b in zip(correct, reference_correct, strict=True))
    diffs = np.asarray(acc, dtype=float) - np.asarray(reference_acc, dtype=float)
    if len(diffs) == 1:
        n = len(correct[0])
        # The difference of two accuracies on the same images: a Newcombe-style interval would
        # need the paired table; the McNemar p-value carries the test, the interval is omitted.
        return Comparison(
            Interval(float(diffs[0]), math.nan, math.nan, 1, method=f"n={n}"),
            pvals[0],
            "McNemar",
            pvals,
        )
    diff = t_interval(diffs, confidence)
    if diff.sd == 0:
        # Identical differences (on a small test set, whole images): the t statistic is
        # undefined. The verdict then needs every replicate's own McNemar test: the largest p.
        return Comparison(diff, max(pvals), "McNemar, largest", pvals)
    return Comparison(diff, float(stats.ttest_rel(acc, reference_acc).pvalue), "paired t", pvals)


def verdicts(
    comparisons: Mapping[str, Comparison], confidence: float = 0.95
) -> dict[str, tuple[str, float]]:
    """name -> (verdict, Holm-adjusted p) for a family of comparisons with the reference."""
    if not comparisons:
        return {}
    names = list(comparisons)
    reject, adjusted, _, _ = multipletests(
        [comparisons[n].p for n in names], alpha=1 - confidence, method="holm"
    )
    out = {}
    for name, rej, p in zip(names, reject, adjusted, strict=True):
        diff = comparisons[name].diff.mean
        verdict = SAME if not rej or diff == 0 else (BETTER if diff > 0 else WORSE)
        out[name] = (verdict, float(p))
    return out


INTERVAL_KEYS = ("test_acc", "noisy_test_acc", "agreement")  # proportions of the test images


def summarise(
    per_run: pd.DataFrame,
    correct: Mapping[tuple[str, str], np.ndarray],
    reference: str,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per variant (rows in the order of `per_run`, indexed by (variant, replicate)): the number
    of replicates, an `Interval` for each of INTERVAL_KEYS, and against `reference` the paired
    `Comparison`, its Holm-adjusted p-value and the verdict (the reference's own are empty)."""
    names = list(dict.fromkeys(per_run.index.get_level_values("variant")))
    if reference not in names:
        raise ValueError(f"reference {reference!r} is not among the variants {names}")
    test_size = int(per_run["test_size"].iloc[0])
    ref_runs = list(per_run.loc[reference].index)
    comparisons = {}
    for name in names:
        if name == reference:
            continue
        runs = [r for r in per_run.loc[name].index if r in ref_runs]
        c = compare(
            per_run.loc[[(name, r) for r in runs], "test_acc"].to_list(),
            per_run.loc[[(reference, r) for r in runs], "test_acc"].to_list(),
            [correct[name, r] for r in runs],
            [correct[reference, r] for r in runs],
            confidence,
        )
        comparisons[name] = dataclasses.replace(c, runs=tuple(runs))
    verdict = verdicts(comparisons, confidence)
    rows = []
    for name in names:
        runs = per_run.loc[name]
        row = {"n": len(runs)}
        for key in INTERVAL_KEYS:
            row[key] = interval(runs[key].to_list(), test_size, confidence)
        row["comparison"] = comparisons.get(name)
        row["verdict"], row["p_holm"] = verdict.get(name, ("reference", math.nan))
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(names, name="variant"))
