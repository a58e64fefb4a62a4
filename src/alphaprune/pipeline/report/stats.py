"""Statistics for telling variants apart: intervals, paired comparisons and a verdict.

Two sources of error make a student's test accuracy uncertain: training (another seed trains
another student) and the finite test set (other images would score it differently). Every
replicate is scored on the same test images, so averaging replicates shrinks the first and not
the second. Hence:

- An accuracy (a proportion of the test images) of several replicates gets its mean, standard
  deviation and a Student-t interval whose variance is s²/n over the replicates plus p(1−p)/N
  for the N test images; an accuracy of one run gets the Wilson interval over the images.
- A variant is compared with a reference variant replicate by replicate (same teacher, same
  seed, same images). The paired difference of test accuracy, counted in whole images, gets a
  t interval of variance s_d²/n plus the matched-pairs (McNemar) variance of the difference on
  the test set; with one replicate, the exact McNemar test on the two students' predictions.
  The exact McNemar p-value of each replicate is reported too.
- With several teachers, the unit of replication is the teacher: its seeds are averaged first
  (seeds pruned from one teacher share it and are not independent).
- The verdict per variant (better, worse, no detectable difference) holds the family of
  comparisons with the reference to the stated level with Holm's step-down correction.

scipy and statsmodels do the distributions; this module only chooses and combines them.
"""

from __future__ import annotations

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
    """A figure with its interval: `mean` over `n` units of replication (or one run's value)."""

    mean: float
    low: float
    high: float
    n: int
    sd: float = math.nan  # over the units; NaN for a single run
    method: str = "t"  # t (over replicates and test images) | wilson | wald (one run)

    def __str__(self) -> str:
        return f"{self.mean:.4f} [{self.low:.4f}, {self.high:.4f}]"


def wilson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    low, high = proportion_confint(successes, trials, alpha=1 - confidence, method="wilson")
    return float(low), float(high)


def t_interval(
    values: Sequence[float], confidence: float = 0.95, extra_var: float = 0.0
) -> Interval:
    """Mean, standard deviation and Student-t interval (n − 1 degrees of freedom) of n >= 2
    values, with `extra_var` added to the variance of the mean (an error they all share)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        raise ValueError(f"a t interval needs at least 2 values, got {len(x)}")
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    se = math.sqrt(sd * sd / len(x) + extra_var)
    if se == 0:
        return Interval(mean, mean, mean, len(x), sd)
    low, high = stats.t.interval(confidence, len(x) - 1, loc=mean, scale=se)
    return Interval(mean, float(low), float(high), len(x), sd)


def cluster_means(values: Sequence[float], clusters: Sequence[str] | None) -> np.ndarray:
    """`values` averaged within each cluster (e.g. the seeds of one teacher), in first-seen
    order; unchanged without clusters."""
    x = np.asarray(values, dtype=float)
    if clusters is None:
        return x
    return pd.Series(x).groupby(list(clusters), sort=False).mean().to_numpy()


def interval(
    values: Sequence[float],
    test_size: int,
    confidence: float = 0.95,
    clusters: Sequence[str] | None = None,
) -> Interval:
    """An interval of an accuracy (a proportion of the `test_size` test images): over the
    replicates (or the `clusters` they fall in) and the test images, within [0, 1]; for one,
    the Wilson interval over the images."""
    units = cluster_means(values, clusters)
    if len(units) < 2:
        value = float(np.mean(values))
        low, high = wilson(round(value * test_size), test_size, confidence)
        return Interval(value, low, high, 1, method="wilson")
    mean = float(units.mean())
    t = t_interval(units, confidence, extra_var=mean * (1 - mean) / test_size)
    return Interval(t.mean, max(t.low, 0.0), min(t.high, 1.0), t.n, t.sd)


def _table(a: np.ndarray, b: np.ndarray) -> list[list[int]]:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"predictions of different test sets: {a.shape} vs {b.shape}")
    return [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """p-value of the exact McNemar test that two classifiers, scored on the same images, have
    the same accuracy (only the images exactly one of them gets right count)."""
    return float(mcnemar(_table(correct_a, correct_b), exact=True).pvalue)


def paired_test_variance(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Variance, from the finite test set, of the difference of two accuracies measured on the
    same N images: ((b + c)/N − d²)/N, b and c the images only one of them gets right and d the
    difference (the matched-pairs variance behind McNemar's test)."""
    (_, b), (c, _) = _table(correct_a, correct_b)
    n = len(correct_a)
    d = (b - c) / n
    return ((b + c) / n - d * d) / n


@dataclass(frozen=True)
class Comparison:
    """One variant against the reference, over the replicates both have."""

    diff: Interval  # difference of test accuracy, variant − reference
    p: float  # the p-value the verdict uses
    test: str  # "paired t" | "McNemar"
    mcnemar: tuple[float, ...]  # exact McNemar p-value of each replicate
    runs: tuple[str, ...] = ()  # the replicates' names, in that order
    test_var: float = math.nan  # the finite test set's share of the difference's variance


def compare(
    correct: Sequence[np.ndarray],
    reference_correct: Sequence[np.ndarray],
    confidence: float = 0.95,
    runs: Sequence[str] = (),
    clusters: Sequence[str] | None = None,
) -> Comparison:
    """A variant against the reference from each replicate's per-image correctness (both in the
    same replicate order). Differences are counted in whole images, so replicates that differ
    by the same number of images give exactly equal differences."""
    if not len(correct) == len(reference_correct) >= 1:
        raise ValueError("compare needs the same replicates (at least one) for both variants")
    pvals = tuple(mcnemar_exact(a, b) for a, b in zip(correct, reference_correct, strict=True))
    n_images = len(correct[0])
    diffs = [
        (int(np.sum(a)) - int(np.sum(b))) / n_images
        for a, b in zip(correct, reference_correct, strict=True)
    ]
    test_var = float(
        np.mean(
            [paired_test_variance(a, b) for a, b in zip(correct, reference_correct, strict=True)]
        )
    )
    units = cluster_means(diffs, clusters)
    if len(units) == 1:
        d = float(np.mean(diffs))
        half = stats.norm.ppf(0.5 + confidence / 2) * math.sqrt(test_var)
        diff = Interval(d, d - half, d + half, 1, method="wald")
        return Comparison(diff, max(pvals), "McNemar", pvals, tuple(runs), test_var)
    diff = t_interval(units, confidence, extra_var=test_var)
    se = (diff.high - diff.mean) / stats.t.ppf(0.5 + confidence / 2, diff.n - 1)
    p = 1.0 if diff.mean == 0 else float(2 * stats.t.sf(abs(diff.mean) / se, diff.n - 1))
    return Comparison(diff, p, "paired t", pvals, tuple(runs), test_var)


def replicates_to_detect(c: Comparison, confidence: float = 0.95, most: int = 100) -> int | None:
    """The fewest replicates with which a difference of `c`'s size and spread (its replicates'
    standard deviation, its test set's variance) would be detected by the paired t-test at
    `confidence`, two-sided and not adjusted for other comparisons: a planning figure, not a
    verdict. None when no number up to `most` would: the test images every replicate shares
    put a floor under the error that more seeds do not lower. Needs 2 replicates or more (one
    gives no spread to plan with)."""
    d, sd = abs(c.diff.mean), c.diff.sd
    if c.diff.n < 2 or math.isnan(sd) or math.isnan(c.test_var) or d == 0:
        return None
    for n in range(2, most + 1):
        se = math.sqrt(sd * sd / n + c.test_var)
        if se == 0 or d / se > stats.t.ppf(0.5 + confidence / 2, n - 1):
            return n
    return None


def hidden_by_test_set(c: Comparison, confidence: float = 0.95) -> bool:
    """Whether `c`'s difference is within what the test images alone blur (no number of
    replicates on these images could detect it)."""
    half = stats.norm.ppf(0.5 + confidence / 2) * math.sqrt(c.test_var)
    return abs(c.diff.mean) <= half


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


def teacher_clusters(runs: Sequence[str]) -> list[str] | None:
    """The teacher of each replicate (t0 of t0-s1) when there are several teachers, else None:
    with one teacher the seeds are the replicates."""
    teachers = [r.split("-")[0] for r in runs]
    return teachers if len(set(teachers)) > 1 else None


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
    comparisons = {
        name: _paired(per_run, correct, name, reference, confidence)
        for name in names
        if name != reference
    }
    verdict = verdicts(comparisons, confidence)
    rows = []
    for name in names:
        runs = per_run.loc[name]
        row = {"n": len(runs)}
        for key in INTERVAL_KEYS:
            values = runs[key].to_list()
            row[key] = interval(values, test_size, confidence, teacher_clusters(runs.index))
        row["comparison"] = comparisons.get(name)
        row["verdict"], row["p_holm"] = verdict.get(name, ("reference", math.nan))
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(names, name="variant"))


def _paired(per_run: pd.DataFrame, correct, name: str, other: str, confidence: float):
    """`name` against `other` over the replicates both have."""
    theirs = set(per_run.loc[other].index)
    runs = [r for r in per_run.loc[name].index if r in theirs]
    return compare(
        [correct[name, r] for r in runs],
        [correct[other, r] for r in runs],
        confidence,
        runs,
        teacher_clusters(runs),
    )


def compare_pairs(
    per_run: pd.DataFrame,
    correct: Mapping[tuple[str, str], np.ndarray],
    pairs: Mapping[str, str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Each variant against its own partner (`pairs`: variant -> partner, e.g. an annealed
    recipe -> its one-shot twin), as `summarise` compares with the reference: per variant the
    partner, the paired `Comparison` (variant − partner), its Holm-adjusted p-value and the
    verdict, Holm holding this family of comparisons together."""
    comparisons = {a: _paired(per_run, correct, a, b, confidence) for a, b in pairs.items()}
    verdict = verdicts(comparisons, confidence)
    rows = [
        {"partner": pairs[a], "comparison": c, "verdict": verdict[a][0], "p_holm": verdict[a][1]}
        for a, c in comparisons.items()
    ]
    return pd.DataFrame(rows, index=pd.Index(list(comparisons), name="variant"))
