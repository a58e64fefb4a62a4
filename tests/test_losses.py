"""Tests for the training losses: exact values on hand examples, limits of kd, the registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from alphaprune.losses import LOSSES, NEEDS_TEACHER, ce, kd, make_loss, regression


def _batch(seed: int = 0, b: int = 8, classes: int = 5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, classes, generator=g)
    teacher = torch.randn(b, classes, generator=g)
    targets = torch.randint(0, classes, (b,), generator=g)
    return logits, targets, teacher


def test_regression_on_hand_computed_example() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, -1.0, 2.0]])
    teacher = torch.tensor([[0.0, 2.0, 1.0], [2.0, 1.0, 2.0]])
    # difference          [[1, 0, 2], [-2, -2, 0]]
    # squared             [[1, 0, 4], [ 4,  4, 0]]
    # mean over batch      [2.5, 2.0, 2.0]
    # sum over classes     2.5 + 2.0 + 2.0 = 6.5
    targets = torch.tensor([0, 2])  # ignored by regression
    assert regression(logits, targets, teacher).item() == pytest.approx(6.5)


def test_regression_is_zero_when_student_matches_teacher() -> None:
    logits, targets, _ = _batch()
    assert regression(logits, targets, logits.clone()).item() == 0.0


def test_regression_computes_in_float32_for_bf16_inputs() -> None:
    logits, targets, teacher = _batch()
    loss = regression(logits.bfloat16(), targets, teacher.bfloat16())
    assert loss.dtype == torch.float32
    expected = ((logits.bfloat16().float() - teacher.bfloat16().float()) ** 2).mean(0).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_ce_matches_torch_cross_entropy() -> None:
    logits, targets, _ = _batch()
    assert ce(logits, targets).item() == pytest.approx(F.cross_entropy(logits, targets).item())
    smoothed = F.cross_entropy(logits, targets, label_smoothing=0.1)
    assert ce(logits, targets, None, label_smoothing=0.1).item() == pytest.approx(smoothed.item())


def test_kd_with_weight_zero_is_cross_entropy() -> None:
    logits, targets, teacher = _batch()
    got = kd(logits, targets, teacher, weight=0.0)
    assert got.item() == pytest.approx(ce(logits, targets).item(), rel=1e-6)


def test_kd_with_weight_one_is_nonnegative_and_zero_at_the_teacher() -> None:
    logits, targets, teacher = _batch()
    assert kd(logits, targets, teacher, weight=1.0).item() >= 0.0
    assert kd(logits, targets, logits.clone(), weight=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_matches_hinton_formula() -> None:
    logits, targets, teacher = _batch()
    t, w = 3.0, 0.7
    p_teacher = F.softmax(teacher / t, dim=1)
    log_p_student = F.log_softmax(logits / t, dim=1)
    kl = (p_teacher * (p_teacher.log() - log_p_student)).sum(1).mean()
    expected = w * t**2 * kl + (1 - w) * F.cross_entropy(logits, targets)
    got = kd(logits, targets, teacher, temperature=t, weight=w)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


@pytest.mark.parametrize("kind", sorted(LOSSES))
def test_every_loss_is_a_finite_scalar_with_gradient(kind: str) -> None:
    logits, targets, teacher = _batch()
    logits.requires_grad_(True)
    loss = make_loss(kind)(logits, targets, teacher)
    assert loss.shape == ()
    assert math.isfinite(loss.item())
    loss.backward()
    assert logits.grad is not None
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", sorted(NEEDS_TEACHER))
def test_teacher_losses_refuse_missing_teacher(kind: str) -> None:
    logits, targets, _ = _batch()
    with pytest.raises(ValueError, match="teacher_logits"):
        make_loss(kind)(logits, targets, None)


def test_needs_teacher_lists_exactly_the_teacher_losses() -> None:
    assert NEEDS_TEACHER == frozenset({"regression", "kd"})
    assert NEEDS_TEACHER <= set(LOSSES)
    logits, targets, _ = _batch()
    for kind in set(LOSSES) - NEEDS_TEACHER:
        assert torch.isfinite(make_loss(kind)(logits, targets, None))


def test_teacher_gets_no_gradient() -> None:
    logits, targets, teacher = _batch()
    teacher.requires_grad_(True)
    for kind in NEEDS_TEACHER:
        make_loss(kind)(logits.requires_grad_(True), targets, teacher).backward()
    assert teacher.grad is None


def test_make_loss_binds_params() -> None:
    logits, targets, teacher = _batch()
    loss = make_loss("kd", temperature=2.0, weight=0.5)
    expected = kd(logits, targets, teacher, temperature=2.0, weight=0.5)
    assert loss(logits, targets, teacher).item() == expected.item()


def test_make_loss_rejects_unknown_kind_and_params() -> None:
    with pytest.raises(ValueError, match="'mse'") as info:
        make_loss("mse")
    for kind in LOSSES:
        assert kind in str(info.value)
    with pytest.raises(ValueError, match="temprature"):
        make_loss("kd", temprature=2.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        make_loss("regression", label_smoothing=0.1)


@pytest.mark.parametrize(
    ("params", "name"), [({"temperature": 0.0}, "temperature"), ({"weight": 1.5}, "weight")]
)
def test_kd_rejects_bad_params(params: dict[str, float], name: str) -> None:
    logits, targets, teacher = _batch()
    with pytest.raises(ValueError, match=name):
        kd(logits, targets, teacher, **params)
