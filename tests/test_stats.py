"""The report's statistics against values computed independently: closed-form formulas, the
binomial distribution by hand, and synthetic results where the right verdict is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from alphaprune.stats import (
    BETTER,
    SAME,
    WORSE,
    Comparison,
    Interval,
    compare,
    interval,
    mcnemar_exact,
    summarise,
    t_interval,
    verdicts,
    wilson,
)


def _wilson_by_hand(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson (1927): the score interval, written out."""
    z = sps.norm.ppf(1 - (1 - confidence) / 2)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(81, 263), (356, 360), (0, 50), (9_000, 10_000)])
@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_wilson_matches_the_closed_form(k, n, confidence):
    assert wilson(k, n, confidence) == pytest.approx(_wilson_by_hand(k, n, confidence), abs=1e-12)


def test_wilson_textbook_value():
    # Brown, Cai & DasGupta (2001) style check: 81 of 263 at 95% -> (0.2553, 0.3662)
    low, high = wilson(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_t_interval_by_hand():
    # mean 0.92, sd 0.02, t(0.975, 2) = 4.302653: half-width 4.302653 * 0.02 / sqrt(3)
    iv = t_interval([0.90, 0.92, 0.94])
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert iv.mean == pytest.approx(0.92) and iv.sd == pytest.approx(0.02)
    assert (iv.low, iv.high) == pytest.approx((0.92 - half, 0.92 + half))
    assert iv.n == 3 and iv.method == "t"


def test_interval_of_one_run_is_wilson_over_the_test_images():
    iv = interval([0.9], test_size=360)
    assert iv.method == "wilson" and iv.n == 1
    assert (iv.low, iv.high) == pytest.approx(_wilson_by_hand(324, 360, 0.95))


def test_interval_of_replicates_stays_within_0_and_1():
    iv = interval([0.99, 0.999, 0.9], test_size=1000)
    assert 0 <= iv.low <= iv.mean <= iv.high <= 1


def test_interval_of_replicates_is_never_narrower_than_the_test_set_resolves():
    same = interval([0.9, 0.9, 0.9], test_size=360)  # sd 0: the t interval has no width
    assert (same.low, same.high) == pytest.approx(_wilson_by_hand(324, 360, 0.95))
    wide = interval([0.80, 0.90, 0.85], test_size=10_000)  # seeds vary far more than images
    assert (wide.low, wide.high) == pytest.approx(
        (t_interval([0.80, 0.90, 0.85]).low, t_interval([0.80, 0.90, 0.85]).high)
    )


def test_exact_mcnemar_is_the_binomial_tail():
    # 1 image only A gets right, 9 only B: p = 2 P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024
    a = np.array([True] * 50 + [True] * 1 + [False] * 9 + [False] * 40)
    b = np.array([True] * 50 + [False] * 1 + [True] * 9 + [False] * 40)
    assert mcnemar_exact(a, b) == pytest.approx(22 / 1024)
    assert mcnemar_exact(a, a) == pytest.approx(1.0)


def test_holm_by_hand():
    cmp = {
        n: Comparison(Interval(d, math.nan, math.nan, 1), p, "McNemar", (p,))
        for n, d, p in (("x", 0.02, 0.01), ("y", -0.01, 0.04), ("z", 0.01, 0.03))
    }
    out = verdicts(cmp, confidence=0.95)
    # Holm: 0.01 * 3 = 0.03 (reject); then 0.03 * 2 = 0.06 (stop); adjusted p is monotone.
    assert out["x"] == (BETTER, pytest.approx(0.03))
    assert out["z"] == (SAME, pytest.approx(0.06))
    assert out["y"] == (SAME, pytest.approx(0.06))


def test_paired_comparison_uses_a_paired_t_test_over_replicates():
    ref, var = [0.80, 0.82, 0.79], [0.85, 0.88, 0.83]
    correct = [np.ones(10, bool)] * 3
    c = compare(var, ref, correct, correct)
    assert c.test == "paired t" and c.p == pytest.approx(sps.ttest_rel(var, ref).pvalue)
    assert c.diff.mean == pytest.approx(np.mean(np.subtract(var, ref)))


def test_identical_differences_fall_back_to_the_largest_mcnemar_p():
    # every replicate one image better: no variance for a t-test, and one image is no evidence
    ref = np.array([True] * 90 + [False] * 10)
    var = ref.copy()
    var[95] = True
    c = compare([0.91] * 3, [0.90] * 3, [var] * 3, [ref] * 3)
    assert c.test == "McNemar, largest" and c.p == pytest.approx(1.0)
    assert c.diff.mean == pytest.approx(0.01)


# ------------------------------------------------------------------- verdicts on known cases
RNG = np.random.default_rng(0)
N_IMAGES = 2000


def _synthetic(n_runs: int) -> tuple[pd.DataFrame, dict]:
    """ref ~ 80% right; `better` gets right every image ref does plus ~10% more; `same` makes
    exactly ref's predictions; `worse` loses ~10% of ref's right answers."""
    rows, correct = [], {}
    for r in range(n_runs):
        run = f"t0-s{r}"
        ref = RNG.random(N_IMAGES) < 0.8
        flips = RNG.random(N_IMAGES)
        preds = {
            "ref": ref,
            "better": ref | (flips < 0.5),
            "same": ref.copy(),
            "worse": ref & (flips > 0.12),
        }
        for name, c in preds.items():
            correct[name, run] = c
            rows.append(
                {
                    "variant": name,
                    "replicate": run,
                    "test_acc": c.mean(),
                    "noisy_test_acc": c.mean() - 0.1,
                    "agreement": 0.9,
                    "test_size": N_IMAGES,
                }
            )
    per_run = pd.DataFrame(rows).set_index(["variant", "replicate"])
    return per_run, correct


@pytest.mark.parametrize("n_runs", [1, 3])
def test_verdicts_on_synthetic_results(n_runs):
    per_run, correct = _synthetic(n_runs)
    table = summarise(per_run, correct, reference="ref")
    assert table.loc["better", "verdict"] == BETTER
    assert table.loc["worse", "verdict"] == WORSE
    assert table.loc["same", "verdict"] == SAME and table.loc["same", "p_holm"] == 1.0
    assert table.loc["ref", "verdict"] == "reference"
    assert table.loc["better", "comparison"].test == ("McNemar" if n_runs == 1 else "paired t")
    assert (table["n"] == n_runs).all()
    acc = table.loc["better", "test_acc"]
    assert acc.method == ("wilson" if n_runs == 1 else "t") and acc.low < acc.mean < acc.high


def test_a_small_difference_on_few_images_is_no_detectable_difference():
    # 2 images of 360 apart, one run each: McNemar cannot tell them apart
    ref = np.array([True] * 350 + [False] * 10)
    var = ref.copy()
    var[350:352] = True
    per_run = pd.DataFrame(
        [
            {
                "variant": "ref",
                "replicate": "t0-s0",
                "test_acc": ref.mean(),
                "noisy_test_acc": 0.5,
                "agreement": 1.0,
                "test_size": 360,
            },
            {
                "variant": "v",
                "replicate": "t0-s0",
                "test_acc": var.mean(),
                "noisy_test_acc": 0.5,
                "agreement": 1.0,
                "test_size": 360,
            },
        ]
    ).set_index(["variant", "replicate"])
    table = summarise(per_run, {("ref", "t0-s0"): ref, ("v", "t0-s0"): var}, "ref")
    assert table.loc["v", "verdict"] == SAME
    assert table.loc["v", "p_holm"] == pytest.approx(0.5)  # 2 discordant, both one way: 2/4
