"""The report's statistics against values computed independently: closed-form formulas, the
binomial distribution by hand, and synthetic results where the right verdict is known."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from alphaprune.pipeline.report.stats import (
    BETTER,
    SAME,
    WORSE,
    Comparison,
    Interval,
    compare,
    compare_pairs,
    hidden_by_test_set,
    interval,
    mcnemar_exact,
    paired_test_variance,
    replicates_to_detect,
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


def test_interval_of_replicates_adds_the_test_sets_variance():
    # sd over seeds 0: what remains is the test set's binomial variance, p(1-p)/N
    same = interval([0.9, 0.9, 0.9], test_size=360)
    half = 4.302652729911275 * math.sqrt(0.9 * 0.1 / 360)
    assert (same.low, same.high) == pytest.approx((0.9 - half, 0.9 + half))
    x = [0.80, 0.90, 0.85]
    se = math.sqrt(np.var(x, ddof=1) / 3 + 0.85 * 0.15 / 10_000)
    wide = interval(x, test_size=10_000)
    assert (wide.low, wide.high) == pytest.approx(
        (0.85 - 4.302652729911275 * se, 0.85 + 4.302652729911275 * se)
    )


def test_several_teachers_make_the_teacher_the_unit_of_replication():
    # two teachers x two seeds: the seeds of a teacher are averaged first (n = 2, not 4)
    iv = interval([0.80, 0.82, 0.90, 0.92], 10_000, clusters=["t0", "t0", "t1", "t1"])
    assert iv.n == 2 and iv.mean == pytest.approx(0.86)
    assert iv.sd == pytest.approx(np.std([0.81, 0.91], ddof=1))


def test_exact_mcnemar_is_the_binomial_tail():
    # 1 image only A gets right, 9 only B: p = 2 P(X <= 1), X ~ Bin(10, 1/2) = 2 * 11 / 1024
    a = np.array([True] * 50 + [True] * 1 + [False] * 9 + [False] * 40)
    b = np.array([True] * 50 + [False] * 1 + [True] * 9 + [False] * 40)
    assert mcnemar_exact(a, b) == pytest.approx(22 / 1024)
    assert mcnemar_exact(a, a) == pytest.approx(1.0)


def test_paired_test_variance_by_hand():
    a = np.array([True] * 50 + [True] * 1 + [False] * 9 + [False] * 40)
    b = np.array([True] * 50 + [False] * 1 + [True] * 9 + [False] * 40)
    d = (1 - 9) / 100
    assert paired_test_variance(a, b) == pytest.approx(((1 + 9) / 100 - d * d) / 100)


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


def _correct(n_right: int, n: int = 400, shift: int = 0) -> np.ndarray:
    """n images, the `n_right` starting at `shift` right."""
    return (np.arange(n) - shift) % n < n_right


def test_paired_comparison_by_hand():
    # three replicates, the variant 20, 30, 16 images better than the reference out of 400
    ref = [_correct(320), _correct(330), _correct(324)]
    var = [_correct(340), _correct(360), _correct(340)]
    c = compare(var, ref, runs=("t0-s0", "t0-s1", "t0-s2"))
    d = np.array([20, 30, 16]) / 400
    test_var = np.mean([((b + 0) / 400 - (b / 400) ** 2) / 400 for b in (20, 30, 16)])
    se = math.sqrt(np.var(d, ddof=1) / 3 + test_var)
    assert c.test == "paired t" and c.diff.mean == pytest.approx(d.mean())
    assert c.p == pytest.approx(2 * sps.t.sf(d.mean() / se, 2))
    assert c.diff.high - c.diff.mean == pytest.approx(4.302652729911275 * se)
    assert c.mcnemar == pytest.approx(tuple(2 * sps.binom.cdf(0, b, 0.5) for b in (20, 30, 16)))


def test_equal_differences_are_weighed_against_the_test_set():
    # every replicate exactly one image better: no seed variance, and one image is no evidence
    ref = [_correct(360, shift=s) for s in range(3)]
    var = [_correct(361, shift=s) for s in range(3)]
    c = compare(var, ref)
    assert c.diff.sd == 0 and c.diff.mean == pytest.approx(1 / 400)
    assert c.p > 0.2 and c.diff.low < 0 < c.diff.high


def test_one_replicate_uses_mcnemar_with_a_wald_interval():
    c = compare([_correct(340)], [_correct(320)])
    assert c.test == "McNemar" and c.p == pytest.approx(2 * 0.5**20)
    half = 1.959963984540054 * math.sqrt((20 / 400 - (20 / 400) ** 2) / 400)
    assert (c.diff.low, c.diff.high) == pytest.approx((0.05 - half, 0.05 + half))


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


def test_each_variant_against_its_own_partner_holm_over_the_pairs():
    per_run, correct = _synthetic(3)
    pairs = {"better": "ref", "ref": "worse", "same": "ref"}
    table = compare_pairs(per_run, correct, pairs)
    assert list(table.index) == ["better", "ref", "same"]
    assert table.loc["ref", "partner"] == "worse"
    assert table.loc["better", "verdict"] == BETTER and table.loc["ref", "verdict"] == BETTER
    assert table.loc["same", "verdict"] == SAME
    # the same paired comparison summarise makes against a reference, and Holm over 3 pairs
    alone = summarise(per_run, correct, reference="ref").loc["better", "comparison"]
    assert table.loc["better", "comparison"] == alone
    p = sorted(c.p for c in table["comparison"])
    assert table["p_holm"].min() == pytest.approx(min(1.0, 3 * p[0]))


def test_no_pairs_is_an_empty_table():
    per_run, correct = _synthetic(1)
    assert compare_pairs(per_run, correct, {}).empty


def test_replicates_to_detect_by_hand():
    # a difference of 1 point with a seed sd of 1 point and no test-set error: sqrt(n) > t(n-1)
    # first holds at n = 7 (2.646 > 2.447; at 6, 2.449 < 2.571)
    c = Comparison(Interval(0.01, 0.0, 0.02, 3, sd=0.01), 0.2, "paired t", (), test_var=0.0)
    assert replicates_to_detect(c) == 7
    assert replicates_to_detect(c, most=6) is None
    assert not hidden_by_test_set(c)


def test_a_difference_the_test_set_blurs_needs_no_number_of_replicates():
    c = Comparison(Interval(0.001, 0.0, 0.002, 3, sd=0.0), 0.5, "paired t", (), test_var=1e-6)
    assert hidden_by_test_set(c) and replicates_to_detect(c) is None


def test_a_detected_difference_needs_no_more_replicates_than_it_had():
    per_run, correct = _synthetic(3)
    c = summarise(per_run, correct, reference="ref").loc["better", "comparison"]
    assert c.p < 0.05 and replicates_to_detect(c) <= 3


def test_one_replicate_gives_nothing_to_plan_with():
    c = compare([_correct(340)], [_correct(320)])
    assert replicates_to_detect(c) is None
