"""Another ranking at the same *measured* speed (issue 37, part 4): the `amount` at which a plan
made one way (Torch-Pruning's global ranking, say) gives a student that runs as fast as a
reference student, timed in turns with it, not only predicted to.

A `target: latency` plan meets its amount in the table's prediction, and two rankings asked for
one amount can measure some percent apart (the front's 2x: the summed knapsack's student 1.78x,
Torch-Pruning's 1.91x at batch 64; docs/results.md). Comparing their accuracies at equal time
needs the amount that equalises what is measured. `search` finds it: each step times the
candidate's student in turns with the reference's (`deploy.turns.measured_fractions`: the median
over rounds of each round's ratio, so a machine busier in one round moves both alike) and moves
the amount: while every try is on one side, by the step a time proportional to ``1 − amount``
calls for (a plan for `amount` is predicted to take ``1 − amount`` of the teacher's time); once
tries lie on both sides, to where the ratio interpolated between the nearest two crosses 1
(bisecting where a step would leave the bracket). It stops at the first amount whose ratio is
within `tolerance` of 1, when the bracket is narrower than `resolution` (plans step in blocks of
channels: amounts closer than that give the same student), or after `most` steps, with the step
nearest 1."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from alphaprune.budget.plan import BudgetError

HIGHEST = 0.95  # the most of the teacher's time a searched plan may be asked to remove
DIGITS = 4  # amounts are tried rounded to this many decimals, as a variant then gives them


@dataclass(frozen=True)
class Step:
    """One try: the candidate planned at `amount` ran `ratio` times the reference's time."""

    amount: float
    ratio: float


@dataclass(frozen=True)
class Match:
    """The amount found (the step whose ratio is nearest 1), every step taken, and whether that
    step is within the tolerance."""

    amount: float
    ratio: float
    steps: tuple[Step, ...]
    converged: bool


def search(
    ratio_at: Callable[[float], float | None],
    start: float,
    *,
    tolerance: float = 0.02,
    most: int = 8,
    resolution: float = 1e-3,
    highest: float = HIGHEST,
) -> Match:
    """The amount in (0, `highest`] at which `ratio_at(amount)` (the candidate's measured time
    over the reference's, falling as the amount grows; None where no plan removes that much) is
    within `tolerance` of 1, starting at `start` (see the module's docstring). Amounts are tried
    rounded to `DIGITS` decimals, as a variant gives them. A BudgetError where no amount can
    match: the candidate slower than the reference at `highest`, or faster at every amount
    tried."""
    if not 0 < start <= highest:
        raise BudgetError(f"the search starts at an amount in (0, {highest}], got {start}")
    # the tries nearest on each side: too slow (ratio > 1, amount too low), too fast (< 1)
    slow: Step | None = None
    fast: Step | None = None
    low, high = 0.0, highest
    steps: list[Step] = []
    tried: list[float] = []  # every amount asked, planned or not
    amount = round(start, DIGITS)
    for _ in range(most):
        tried.append(amount)
        ratio = ratio_at(amount)
        if ratio is None:  # no plan removes that much: an upper bound
            high = amount
        elif not ratio > 0:
            raise BudgetError(f"at amount {amount} the timings gave a ratio of {ratio}")
        else:
            steps.append(Step(amount, ratio))
            if abs(ratio - 1) <= tolerance:
                break
            if ratio > 1:
                if amount >= highest:
                    raise BudgetError(
                        f"asked to remove {highest} of the teacher's time, its student still "
                        f"takes {ratio:.3f} of the reference's: no amount matches it"
                    )
                slow, low = steps[-1], amount
            else:
                fast, high = steps[-1], amount
        if high - low < resolution:
            break
        if slow and fast:  # bracketed: the ratio interpolated between its two ends
            guess = slow.amount + (slow.ratio - 1) * (fast.amount - slow.amount) / (
                slow.ratio - fast.ratio
            )
        elif ratio is not None:  # one side only: a time proportional to what the plan keeps
            guess = 1 - (1 - amount) / ratio
        else:
            guess = high  # not inside: bisect
        guess = round(guess, DIGITS)
        if low < guess < high:
            amount = guess
        elif fast is None and high == highest and highest not in tried:
            amount = highest  # no faster side seen yet: try the most there is
        else:
            amount = round((low + high) / 2, DIGITS)
    if not steps:
        raise BudgetError(f"no plan removes {start} of the teacher's time, nor any amount tried")
    best = min(reversed(steps), key=lambda s: abs(s.ratio - 1))  # ties: the later, nearer
    converged = abs(best.ratio - 1) <= tolerance
    if not converged and slow is None:
        raise BudgetError(
            f"at every amount tried, down to {min(s.amount for s in steps)}, its student takes "
            f"less than the reference's time ({best.ratio:.3f} at best): it is faster at any "
            "budget this search reaches"
        )
    return Match(best.amount, best.ratio, tuple(steps), converged)
