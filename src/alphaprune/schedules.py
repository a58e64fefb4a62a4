"""α schedules: which blend weights to train at, in order.

Each schedule is a tiny pure function returning the α values of its stages. Every list starts
below 1 (α = 1 is the untouched teacher, nothing to train) and ends at exactly 0.0, the only α
at which the blend can be collapsed to the student, and is strictly decreasing so that every
stage moves the network closer to the student.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = [
    "SCHEDULES",
    "alpha_sequence",
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


SCHEDULES: dict[str, Callable[..., list[float]]] = {
    "exponential": exponential,
    "linear": linear,
    "cosine": cosine,
    "step": step,
    "oneshot": oneshot,
}


def alpha_sequence(kind: str, **params: object) -> list[float]:
    """The α values of schedule `kind` built with `params` (as a config names it)."""
    try:
        schedule = SCHEDULES[kind]
    except KeyError:
        known = ", ".join(sorted(SCHEDULES))
        raise ValueError(f"unknown schedule {kind!r}; known schedules: {known}") from None
    return schedule(**params)
