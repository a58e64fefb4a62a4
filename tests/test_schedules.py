"""Tests for the α schedules: shape of every schedule, exact values, and argument checks."""

from __future__ import annotations

import math

import pytest

from alphaprune import schedules
from alphaprune.schedules import (
    SCHEDULES,
    alpha_at,
    alpha_sequence,
    budget_fit,
    cosine,
    even_steps,
    exponential,
    linear,
    oneshot,
    step,
)

# A valid example configuration for every registry entry.
EXAMPLE_PARAMS: dict[str, dict[str, object]] = {
    "exponential": {"rate": 0.05, "alpha_min": 0.05},
    "linear": {"steps": 7},
    "cosine": {"steps": 7},
    "step": {"values": [0.9, 0.5, 0.1]},
    "oneshot": {},
}


def test_every_schedule_has_an_example() -> None:
    assert set(EXAMPLE_PARAMS) == set(SCHEDULES)


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_schedule_is_strictly_decreasing_from_below_one_to_exactly_zero(kind: str) -> None:
    alphas = alpha_sequence(kind, **EXAMPLE_PARAMS[kind])
    assert alphas, "a schedule has at least one stage"
    assert all(isinstance(a, float) for a in alphas)
    assert alphas[0] < 1.0
    assert alphas[-1] == 0.0
    assert all(later < earlier for earlier, later in zip(alphas[:-1], alphas[1:], strict=True))


@pytest.mark.parametrize("kind", sorted(SCHEDULES))
def test_alpha_sequence_calls_the_registered_function(kind: str) -> None:
    assert alpha_sequence(kind, **EXAMPLE_PARAMS[kind]) == SCHEDULES[kind](**EXAMPLE_PARAMS[kind])


def test_exponential_values_are_powers_of_one_minus_rate() -> None:
    # 0.95**58 ≈ 0.0510 >= 0.05 > 0.95**59 ≈ 0.0485, so there are 58 decayed stages.
    k_last = max(k for k in range(1, 200) if 0.95**k >= 0.05)
    assert k_last == 58
    expected = [0.95**k for k in range(1, k_last + 1)] + [0.0]
    assert schedules.exponential(0.05, 0.05) == expected


def test_exponential_with_alpha_min_above_first_value_is_oneshot() -> None:
    assert schedules.exponential(0.5, 0.6) == [0.0]


def test_linear_values() -> None:
    assert schedules.linear(4) == [0.75, 0.5, 0.25, 0.0]
    assert schedules.linear(1) == [0.0]


def test_cosine_values() -> None:
    # 0.5·(1 + cos(π·k/4)) for k = 1, 2, 3, then exactly 0.
    expected = [0.5 + 0.25 * math.sqrt(2), 0.5, 0.5 - 0.25 * math.sqrt(2), 0.0]
    assert schedules.cosine(4) == pytest.approx(expected, abs=1e-15)
    assert schedules.cosine(4)[-1] == 0.0


def test_step_appends_zero_only_when_missing() -> None:
    assert schedules.step([0.5, 0.1]) == [0.5, 0.1, 0.0]
    assert schedules.step((0.5, 0.0)) == [0.5, 0.0]
    assert schedules.step([0.0]) == [0.0]


def test_oneshot() -> None:
    assert schedules.oneshot() == [0.0]


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("exponential", {"rate": 0.0, "alpha_min": 0.05}, "rate"),
        ("exponential", {"rate": 1.0, "alpha_min": 0.05}, "rate"),
        ("exponential", {"rate": -0.1, "alpha_min": 0.05}, "rate"),
        ("exponential", {"rate": math.nan, "alpha_min": 0.05}, "rate"),
        ("exponential", {"rate": 0.05, "alpha_min": 0.0}, "alpha_min"),
        ("exponential", {"rate": 0.05, "alpha_min": 1.0}, "alpha_min"),
        ("exponential", {"rate": 1e-12, "alpha_min": 0.05}, "stages"),
        ("exponential", {"rate": 1e-17, "alpha_min": 0.05}, "stages"),
        ("linear", {"steps": 0}, "steps"),
        ("linear", {"steps": -3}, "steps"),
        ("linear", {"steps": 2.0}, "steps"),
        ("cosine", {"steps": 0}, "steps"),
        ("step", {"values": []}, "values"),
        ("step", {"values": [0.5, 0.5]}, "strictly decreasing"),
        ("step", {"values": [0.1, 0.5]}, "strictly decreasing"),
        ("step", {"values": [1.0, 0.5]}, r"values\[0\]"),
        ("step", {"values": [0.5, -0.1]}, r"values\[1\]"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(
    kind: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        alpha_sequence(kind, **params)


def test_bad_value_is_quoted_in_the_message() -> None:
    with pytest.raises(ValueError, match=r"rate must be in \(0, 1\), got 1\.5"):
        schedules.exponential(1.5, 0.05)
    with pytest.raises(ValueError, match="got -3"):
        schedules.linear(-3)


def test_unknown_kind_names_it_and_lists_known_kinds() -> None:
    with pytest.raises(ValueError, match="'expo'") as info:
        alpha_sequence("expo", rate=0.05)
    for kind in SCHEDULES:
        assert kind in str(info.value)


# ------------------------------------------------------------------------ fitting the budget
BUILT_IN = [
    exponential(0.05, 0.05),  # 58 steps
    exponential(0.1, 0.05),  # 28 steps
    linear(20),
    cosine(7),
    step([0.9, 0.5, 0.1]),
    linear(2),
]


@pytest.mark.parametrize("alphas", BUILT_IN, ids=lambda a: f"{len(a) - 1}-steps")
@pytest.mark.parametrize("budget", [1, 3, 10, 135])
def test_even_steps_reach_the_last_alpha_within_the_budget(alphas, budget):
    values, epochs = even_steps(alphas, budget)
    anneal = [a for a in alphas if a > 0]
    assert values[-1] == anneal[-1]  # the schedule's last α > 0 is trained
    assert sum(epochs) == budget  # the whole α > 0 budget, no more
    assert all(e >= 1 for e in epochs) and max(epochs) - min(epochs) <= 1  # evenly
    assert values == sorted(values, reverse=True) and set(values) <= set(anneal)
    if len(anneal) <= budget:
        assert values == anneal  # every step trained


@pytest.mark.parametrize("alphas", BUILT_IN, ids=lambda a: f"{len(a) - 1}-steps")
@pytest.mark.parametrize(("budget", "batches"), [(1, 1), (2, 156), (3, 7), (10, 1)])
def test_alpha_at_moves_every_batch_and_meets_even_mode_at_each_epoch_end(alphas, budget, batches):
    anneal = [a for a in alphas if a > 0]
    total = budget * batches
    per_batch = [alpha_at(anneal, done, total) for done in range(1, total + 1)]
    assert per_batch == sorted(per_batch, reverse=True) and set(per_batch) <= set(anneal)
    assert per_batch[-1] == anneal[-1]  # the last batch trains the last α > 0
    # as many distinct α as the schedule has steps, or one per batch when it has more
    assert len(set(per_batch)) == min(len(anneal), total)
    values, epochs = even_steps(alphas, budget)
    by_epoch = [a for a, n in zip(values, epochs, strict=True) for _ in range(n)]
    assert per_batch[batches - 1 :: batches] == by_epoch  # each epoch ends at even mode's α


def test_alpha_at_refuses_what_is_not_a_unit_of_the_budget():
    with pytest.raises(ValueError, match="done must be in"):
        alpha_at([0.5], 0, 4)
    with pytest.raises(ValueError, match="done must be in"):
        alpha_at([0.5], 5, 4)
    with pytest.raises(ValueError, match="at least one"):
        alpha_at([], 1, 4)


def test_even_steps_of_oneshot_is_empty():
    assert even_steps(oneshot(), 10) == ([], [])


@pytest.mark.parametrize("mode", ["plateau", "even", "batch"])
@pytest.mark.parametrize("budget", [-2, 0, 5])
def test_budget_fit_of_oneshot_fits_whatever_the_budget(mode, budget):
    # one-shot may keep every epoch for fine-tuning (finetune_epochs >= epochs: budget <= 0)
    fit = budget_fit(oneshot(), budget, mode)
    assert fit.steps == 0 and fit.drop_from is None and not fit.certain
    assert "one-shot" in fit.message("v")


def test_budget_fit_in_plateau_mode():
    alphas = exponential(0.1, 0.05)  # 28 α > 0 steps
    cut = budget_fit(alphas, 10, "plateau", min_epochs=1, max_epochs=1)
    assert cut.certain and cut.steps == 28 and cut.fewest_epochs == 28
    assert cut.drop_from == pytest.approx(0.9**10)  # ten one-epoch steps, then 0
    assert "does not fit" in cut.message("v") and "0.349" in cut.message("v")
    # steps of 3 epochs in 10: 3 + 3 + 3 + a last step of 1, so four α values are trained
    assert budget_fit(alphas, 10, "plateau", 3, 3).drop_from == pytest.approx(0.9**4)
    maybe = budget_fit(alphas, 40, "plateau", min_epochs=1, max_epochs=3)
    assert not maybe.certain and maybe.drop_from == pytest.approx(0.9**14)
    assert budget_fit(alphas, 84, "plateau", 1, 3).drop_from is None
    assert "fits" in budget_fit(alphas, 84, "plateau", 1, 3).message("v")
    even = budget_fit(alphas, 10, "even")
    assert even.drop_from is None and not even.certain and "even" in even.message("v")
    batch = budget_fit(alphas, 10, "batch")
    assert (
        batch.drop_from is None
        and not batch.certain
        and "every training batch" in batch.message("v")
    )
