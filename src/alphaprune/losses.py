"""Training losses for the blended student, all with the signature ``(logits, targets, teacher)``.

A common signature lets the fit loop call any loss the same way; `teacher_logits` is None for
losses that only use labels. Every loss is computed in float32 (float64 in a float64 run), because
bf16 sums over a batch and over classes lose too many digits for a loss that is small near
convergence. Teacher
logits are treated as a fixed target (detached): gradients flow only into the student.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from alphaprune.registry import Registry
from alphaprune.runtime import widened

__all__ = ["LOSSES", "NEEDS_TEACHER", "ce", "kd", "make_loss", "regression"]

Loss = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def _teacher(kind: str, teacher_logits: Tensor | None) -> Tensor:
    if teacher_logits is None:
        raise ValueError(f"loss {kind!r} needs teacher_logits, got None")
    return widened(teacher_logits.detach())


def ce(
    logits: Tensor,
    targets: Tensor,
    teacher_logits: Tensor | None = None,
    *,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of `logits` (B, classes) against integer labels `targets` (B,).

    `teacher_logits` is accepted and ignored, so every loss shares one signature.
    """
    return F.cross_entropy(widened(logits), targets, label_smoothing=label_smoothing)


def regression(logits: Tensor, targets: Tensor, teacher_logits: Tensor | None) -> Tensor:
    """Regression on the teacher's logits: Σ_classes mean_batch (logits − teacher)².

    Summing over classes (not averaging) keeps the gradient per logit independent of the
    number of classes, as in the seed method. `targets` is ignored.
    """
    diff = widened(logits) - _teacher("regression", teacher_logits)
    return (diff**2).mean(dim=0).sum()


def kd(
    logits: Tensor,
    targets: Tensor,
    teacher_logits: Tensor | None,
    *,
    temperature: float = 4.0,
    weight: float = 0.9,
) -> Tensor:
    """Hinton distillation: weight·T²·KL(p_teacher^T ‖ p_student^T) + (1 − weight)·CE.

    The T² factor keeps the soft term's gradient scale independent of the temperature T; the
    KL divergence is summed over classes and averaged over the batch ("batchmean").
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight!r}")
    teacher = _teacher("kd", teacher_logits)
    student_log_p = F.log_softmax(widened(logits) / temperature, dim=-1)
    teacher_log_p = F.log_softmax(teacher / temperature, dim=-1)
    soft = F.kl_div(student_log_p, teacher_log_p, reduction="batchmean", log_target=True)
    hard = F.cross_entropy(widened(logits), targets)
    return weight * temperature**2 * soft + (1.0 - weight) * hard


LOSSES: Registry[Callable[..., Tensor]] = Registry("loss")
for _fn in (ce, regression, kd):
    LOSSES.register(_fn.__name__)(_fn)

# Losses that must be given teacher logits (so the fit loop knows to run the teacher).
NEEDS_TEACHER: frozenset[str] = frozenset({"regression", "kd"})


def make_loss(kind: str, **params: object) -> Loss:
    """Loss `kind` with its keyword `params` bound, callable as ``loss(logits, targets, teacher)``.

    Parameter names are checked here, so a config typo fails before training starts.
    """
    fn = LOSSES.lookup(kind)
    signature = inspect.signature(fn)
    keyword_only = {name for name, p in signature.parameters.items() if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(params) - keyword_only)
    if unknown:
        allowed = ", ".join(sorted(keyword_only)) or "none"
        raise ValueError(f"loss {kind!r} has no parameter(s) {unknown}; allowed: {allowed}")
    return functools.partial(fn, **params)
