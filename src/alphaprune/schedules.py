"""α schedules: which blend weights to train at, in order.

Each schedule is a tiny pure function returning the α values of its stages. Every list starts
below 1 (α = 1 is the untouched teacher, nothing to train) and ends at exactly 0.0, the only α
at which the blend can be collapsed to the student, and is strictly decreasing so that every
stage moves the network closer to the student.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from alphaprune.registry import Registry

__all__ = [
    "SCHEDULES",
    "BudgetFit",
    "alpha_at",
    "alpha_sequence",
    "fit_steps",
    "budget_fit",
    "even_steps",
    "cosine",
    "exponential",
    "linear",
    "oneshot",
    "step",
]

# Upper bound on an exponential schedule's length: far beyond any trainable number of stages.
_MAX_STAGES = 100_000


def _check_open_unit(name: str, value: float) -> None:
    # `not (0 < v < 1)` also rejects NaN.
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def _check_steps(steps: int) -> None:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def exponential(rate: float, alpha_min: float) -> list[float]:
    """α_k = (1 − rate)^k for k = 1, 2, … while α_k >= alpha_min, then 0.0.

    Multiplicative decay moves α by ever smaller amounts, spending more stages close to the
    student where the remaining gap is hardest to close. Computed as ``(1 - rate) ** k``, not by
    repeated multiplication, so every value is reproducible exactly.
    """
    _check_open_unit("rate", rate)
    _check_open_unit("alpha_min", alpha_min)
    # A tiny rate would mean millions of stages (or, once 1 - rate rounds to 1, never ending).
    stages = math.log(alpha_min) / math.log1p(-rate) if 1.0 - rate < 1.0 else math.inf
    if stages > _MAX_STAGES:
        raise ValueError(
            f"rate={rate!r} with alpha_min={alpha_min!r} gives ~{stages:.3g} stages, "
            f"more than {_MAX_STAGES}; use a larger rate or alpha_min"
        )
    alphas: list[float] = []
    k = 1
    while (alpha := (1.0 - rate) ** k) >= alpha_min:
        alphas.append(alpha)
        k += 1
    return [*alphas, 0.0]


def linear(steps: int) -> list[float]:
    """α_k = 1 − k/steps for k = 1..steps: equal decrements, ending at 0."""
    _check_steps(steps)
    return [1.0 - k / steps for k in range(1, steps + 1)]


def cosine(steps: int) -> list[float]:
    """α_k = ½·(1 + cos(π·k/steps)) for k = 1..steps: small moves near both ends.

    The last value is set to exactly 0.0 because cos(π) rounds to −1 only approximately.
    """
    _check_steps(steps)
    alphas = [0.5 * (1.0 + math.cos(math.pi * k / steps)) for k in range(1, steps + 1)]
    alphas[-1] = 0.0
    return alphas


def step(values: Sequence[float]) -> list[float]:
    """An explicit, strictly decreasing list of α values in [0, 1); 0.0 appended if missing."""
    alphas = [float(v) for v in values]
    if not alphas:
        raise ValueError("values must name at least one alpha, got an empty sequence")
    for i, a in enumerate(alphas):
        if not 0.0 <= a < 1.0:
            raise ValueError(f"values[{i}] must be in [0, 1), got {a!r}")
    for i in range(1, len(alphas)):
        if not alphas[i] < alphas[i - 1]:
            raise ValueError(
                f"values must be strictly decreasing, got values[{i - 1}]={alphas[i - 1]!r} "
                f"then values[{i}]={alphas[i]!r}"
            )
    if alphas[-1] != 0.0:
        alphas.append(0.0)
    return alphas


def oneshot() -> list[float]:
    """[0.0]: replace every layer by its branch at once, then fine-tune (the baseline)."""
    return [0.0]


SCHEDULES: Registry[Callable[..., list[float]]] = Registry("schedule")
for _fn in (exponential, linear, cosine, step, oneshot):
    SCHEDULES.register(_fn.__name__)(_fn)


def alpha_sequence(kind: str, **params: object) -> list[float]:
    """The α values of schedule `kind` built with `params` (as a config names it)."""
    return SCHEDULES.lookup(kind)(**params)


# ------------------------------------------------------------------------ fitting the budget
def even_steps(alphas: Sequence[float], budget: int) -> tuple[list[float], list[int]]:
    """The α > 0 steps of `alphas` spread evenly over `budget` epochs: (α values, epochs of
    each), the last α > 0 of the schedule always included. With fewer steps than epochs each
    step gets ⌊budget/steps⌋ or one more; with more steps than epochs, consecutive steps share
    an epoch and α moves to the last of them (the α curve keeps its shape over the budget)."""
    anneal = [a for a in alphas if a > 0]
    if not anneal or budget <= 0:
        return [], []
    n = len(anneal)
    if n <= budget:
        return anneal, [(k + 1) * budget // n - k * budget // n for k in range(n)]
    return [anneal[math.ceil((j + 1) * n / budget) - 1] for j in range(budget)], [1] * budget


def fit_steps(
    alphas: Sequence[float], mode: str, budget: int
) -> tuple[list[float], list[int] | None, list[float] | None]:
    """The α steps a fit trains for schedule `alphas` in advance `mode` with `budget` α > 0
    epochs: (α of each step, ending at 0; epochs of each α > 0 step, None in plateau mode;
    batch mode's α > 0 steps to spread over the batches, else None). Even mode spreads the
    steps over the budget (`even_steps`); batch mode makes each α > 0 epoch a step, its α the
    one even mode trains in that epoch, and α moves on at every batch (`alpha_at`)."""
    alphas = list(alphas)
    if mode == "plateau":
        return alphas, None, None
    anneal, step_epochs = even_steps(alphas, budget)
    batch_anneal = None
    if mode == "batch" and anneal:
        batch_anneal = [a for a in alphas if a > 0]
        anneal = [a for a, n in zip(anneal, step_epochs, strict=True) for _ in range(n)]
        step_epochs = [1] * len(anneal)
    return [*anneal, 0.0], step_epochs, batch_anneal


def alpha_at(anneal: Sequence[float], done: int, total: int) -> float:
    """The α of a schedule's α > 0 steps `anneal` once `done` of `total` equal units of the
    α > 0 budget are trained (batch mode: units are training batches): the steps share the
    units evenly, the last α > 0 falls on the last unit. Integer arithmetic, so the α at an
    epoch's end is exactly even mode's α for that epoch."""
    if not anneal:
        raise ValueError("anneal must name at least one α > 0 step, got an empty sequence")
    if not 0 < done <= total:
        raise ValueError(f"done must be in [1, total={total}], got {done!r}")
    return anneal[-(-done * len(anneal) // total) - 1]


@dataclass(frozen=True)
class BudgetFit:
    """How a schedule's α > 0 steps meet the α > 0 epoch budget."""

    steps: int  # α > 0 steps of the schedule
    fewest_epochs: int  # the fewest epochs they take (plateau: min_epochs each; even: budget)
    budget: int  # epochs before the fine-tune epochs
    mode: str
    drop_from: float | None  # plateau: the last α trained before α drops to 0, if it drops
    certain: bool  # plateau: it drops even if every step stops at min_epochs

    def message(self, name: str) -> str:
        head = f"{name}: {self.steps} α steps, α > 0 budget {self.budget} epochs"
        if self.steps == 0:
            return f"{name}: no α > 0 step (one-shot): every epoch trains the student"
        if self.mode == "batch":
            return (
                f"{head}: batch mode, α moves on at every training batch, the {self.steps} steps "
                "spread over the whole budget"
            )
        if self.mode == "even":
            if self.steps > self.budget:
                return (
                    f"{head}: even mode, one α per epoch, moving ~{self.steps / self.budget:.2g} "
                    "steps at a time"
                )
            return f"{head}: even mode, {self.budget / max(self.steps, 1):.2g} epochs per step"
        head += f", plateau mode needs at least {self.fewest_epochs}"
        if self.drop_from is None:
            return f"{head}: fits"
        if self.certain:
            return (
                f"{head}: does not fit; α will drop to 0 from {self.drop_from:.3g} at best "
                "(use advance.mode: even, fewer steps or more epochs)"
            )
        return (
            f"{head}: fits only if steps stop before max_epochs; at max_epochs α drops from "
            f"{self.drop_from:.3g} to 0"
        )


def budget_fit(
    alphas: Sequence[float], budget: int, mode: str, min_epochs: int = 1, max_epochs: int = 1
) -> BudgetFit:
    """Does the schedule reach its last α > 0 before the fine-tune epochs? In plateau mode a
    step takes between `min_epochs` and `max_epochs`: if even the minimum overruns the budget,
    α certainly drops to 0 early (from `drop_from`); if only the maximum does, it may."""
    anneal = [a for a in alphas if a > 0]
    n = len(anneal)
    if n == 0:  # one-shot: nothing to fit (its fine-tune may be given every epoch, budget <= 0)
        return BudgetFit(0, 0, max(budget, 0), mode, None, False)
    if mode in ("even", "batch"):
        return BudgetFit(n, min(n, budget), budget, mode, None, False)
    fewest = n * min_epochs
    # The fit loop trains a last, shortened step with what is left of the budget: the steps
    # trained are ceil(budget / epochs per step).
    if fewest > budget:
        return BudgetFit(n, fewest, budget, mode, anneal[-(-budget // min_epochs) - 1], True)
    if n * max_epochs > budget:
        return BudgetFit(n, fewest, budget, mode, anneal[-(-budget // max_epochs) - 1], False)
    return BudgetFit(n, fewest, budget, mode, None, False)
