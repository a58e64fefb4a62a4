"""make_student: the teacher's copy with its planned layers blended, at α = 1 the teacher."""

from __future__ import annotations

import pytest
import torch

from alphaprune import blend
from alphaprune.budget.allocator import allocate
from alphaprune.models import build_model
from alphaprune.student import make_student


@pytest.fixture
def teacher():
    torch.manual_seed(0)
    return build_model("cnn", num_classes=10, in_channels=1, image_size=8).eval()


# Every kind with every init it has (sparse has no least-squares init; the schema refuses it).
CASES = [
    (kind, init)
    for kind in ("pointwise", "lowrank", "dwsep", "sparse")
    for init in ("random", "pretrained", "lsq")
    if (kind, init) != ("sparse", "lsq")
]


@pytest.mark.parametrize(("kind", "init"), CASES)
def test_the_student_blends_the_planned_layers_and_starts_as_the_teacher(teacher, kind, init):
    x = torch.randn(32, 1, 8, 8)
    plan = allocate(teacher, kind, 0.5, x[:2])
    student = make_student(teacher, plan, init, calibration=[x] if init == "lsq" else None)
    names = [name for name, _ in blend.blends(student)]
    assert names == [lp.name for lp in plan.layers]
    assert not list(blend.blends(teacher))  # the teacher itself is untouched
    with torch.no_grad():  # α = 1: the original layers' outputs, up to the fused kernel's rounding
        torch.testing.assert_close(student.eval()(x), teacher(x), rtol=1e-5, atol=1e-5)


def test_bad_inits_are_refused(teacher):
    plan = allocate(teacher, "pointwise", 0.5, torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match="unknown init 'svd'; known: random, pretrained, lsq"):
        make_student(teacher, plan, "svd")
    with pytest.raises(ValueError, match="needs calibration"):
        make_student(teacher, plan, "lsq")
