"""Another ranking at the same measured speed (alphaprune.pipeline.deploy.match): the search
converges on stand-in timings (a time proportional to what the plan keeps, one with curvature,
one that steps), says when no amount can match, and the `alphaprune match` command finds the
amount whose student's (stand-in) time is the reference's: at round_to 1, where the plans are
fine enough for 1%; at round_to 4, where the cnn's nearest plan is 4% off, it ends with an
error naming the nearest."""

from __future__ import annotations

import json
import re

import pytest
import torch

from alphaprune.branches.base import count_params
from alphaprune.budget.allocator import allocate
from alphaprune.budget.plan import BudgetError
from alphaprune.modelfile import recipe_for, save_model, with_plan
from alphaprune.models import build_model
from alphaprune.pipeline.cli import main
from alphaprune.pipeline.deploy import table as table_module
from alphaprune.pipeline.deploy import turns as turns_module
from alphaprune.pipeline.deploy.match import search
from alphaprune.pipeline.deploy.table import measure_table
from alphaprune.pipeline.deploy.turns import narrowed
from stand_in_tables import stand_in_table


def test_a_time_proportional_to_what_is_kept_is_matched_in_one_step():
    """Where a plan's time is proportional to 1 - amount (what the step assumes), the second
    try is the match, from either side."""
    for start in (0.2, 0.6):
        found = search(lambda a: (1 - a) / (1 - 0.37), start)
        assert found.converged and len(found.steps) == 2
        assert found.amount == pytest.approx(0.37, abs=1e-12)


def _assert_each_try_inside_the_bracket(steps) -> None:
    """Once tries lie on both sides of 1, every later try lies strictly between the nearest."""
    low, high = 0.0, 1.0
    for step in steps:
        assert low < step.amount < high
        if step.ratio > 1:
            low = step.amount
        else:
            high = step.amount


def test_a_curved_time_is_matched_within_the_tolerance_inside_a_closing_bracket():
    curved = [lambda a: ((1 - a) / 0.6) ** 1.6, lambda a: ((1 - a) / 0.6) ** 0.5]
    for ratio_at in curved:
        found = search(ratio_at, 0.2, tolerance=0.01)
        assert found.converged and abs(found.ratio - 1) <= 0.01
        assert abs(ratio_at(found.amount) - 1) <= 0.01 and len(found.steps) <= 5
        assert found.amount == round(found.amount, 4)  # as a variant will give it
        _assert_each_try_inside_the_bracket(found.steps)


def test_amounts_no_plan_reaches_are_an_upper_bound():
    """Above 0.6 the other ranking cannot plan (None): the search looks lower and matches."""
    asked = []

    def ratio_at(a):
        asked.append(a)
        return None if a > 0.6 else ((1 - a) / 0.42) ** 3

    found = search(ratio_at, 0.2, tolerance=0.01)
    assert found.converged and abs(found.amount - 0.58) < 0.005
    assert any(a > 0.6 for a in asked) and len(asked) > len(found.steps)
    _assert_each_try_inside_the_bracket(found.steps)


def test_a_time_that_steps_past_one_gives_the_nearest_and_says_so():
    """Plans step in blocks of channels: no amount gives a ratio within the tolerance, and the
    search stops with the bracket closed, the nearest try, and converged False."""
    found = search(lambda a: 1.03 if a < 0.5 else 0.95, 0.3, tolerance=0.02, most=30)
    assert not found.converged and found.ratio == 1.03
    assert len(found.steps) < 30  # the bracket closed below the resolution first
    assert abs(found.amount - 0.5) < 2e-3
    _assert_each_try_inside_the_bracket(found.steps)


def test_no_amount_that_matches_is_refused():
    with pytest.raises(BudgetError, match="still takes 2.000 of the reference's"):
        search(lambda a: 2.0, 0.5)
    with pytest.raises(BudgetError, match="faster at any budget"):
        search(lambda a: 0.9, 0.5)
    with pytest.raises(BudgetError, match="a ratio of 0.0"):
        search(lambda a: 0.0, 0.5)
    with pytest.raises(BudgetError, match="no plan removes 0.5"):
        search(lambda a: None, 0.5)
    with pytest.raises(BudgetError, match="starts at an amount in"):
        search(lambda a: 1.0, 0.0)


def _params_as_ms(models, shape, *args, shapes=None):
    """A stand-in for the timings: a model takes its parameter count, in every round."""
    return [[float(sum(p.numel() for p in m.parameters()))] * 2 for m in models]


def test_match_finds_the_amount_whose_student_takes_the_reference_s_time(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(table_module, "timed_in_turns", _params_as_ms)
    monkeypatch.setattr(turns_module, "timed_in_turns", _params_as_ms)
    torch.manual_seed(0)
    model = build_model("cnn", 10, in_channels=3, image_size=16).eval()
    shape = (3, 16, 16)
    teacher = tmp_path / "teacher.pt"
    save_model(teacher, model, recipe_for("cnn", 10, shape))
    table = measure_table(model, shape, batch=8, round_to=1, widths=2, exclude=["fc"])
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table.to_dict()))
    args = ["match", "--teacher", str(teacher), "--table", str(path), "--amount", "0.4"]
    assert main([*args, "--exclude", "fc", "--tolerance", "0.01"]) == 0
    said = capsys.readouterr().out
    assert "reference: knapsack_summed at amount 0.4" in said and "matched:" in said
    amount = float(re.search(r"ranking: global, amount: ([0-9.]+)\}", said).group(1))
    example = torch.zeros(2, *shape)

    def params(ranking: str, a: float) -> float:
        plan = allocate(
            model, "channels", a, example, ["fc"], 1, "latency", table=table, ranking=ranking
        )
        kept = {r: table.widths[r] - len(i) for r, i in plan.removed.items()}
        return _params_as_ms([narrowed(model, kept, example)], shape)[0][0]

    ratio = params("global", amount) / params("knapsack_summed", 0.4)
    assert abs(ratio - 1) <= 0.01
    assert main([*args, "--exclude", "fc", "--against", "knapsack_summed"]) == 2
    assert "the reference's ranking already" in capsys.readouterr().err
    assert main([*args[:-1], "0.99", "--exclude", "fc"]) == 2
    assert "--amount: in (0, 0.95], got 0.99" in capsys.readouterr().err
    # at round_to 4 no plan of the cnn comes within 1%: an error naming the nearest
    coarse = measure_table(model, shape, batch=8, round_to=4, widths=2, exclude=["fc"])
    path.write_text(json.dumps(coarse.to_dict()))
    assert main([*args, "--exclude", "fc", "--tolerance", "0.01"]) == 2
    said = capsys.readouterr().err
    assert "not within --tolerance 0.01 after" in said and "the nearest, global at amount" in said


def test_match_takes_a_saved_student_of_any_kind_for_the_reference(tmp_path, monkeypatch, capsys):
    """--student: a block student a prune saved (ResNet-20, blocks dropped), or a channel student
    (saved narrowed), is the reference, timed as it is; Torch-Pruning's amount is searched until
    its student takes that time (here each model's time is its parameter count, which moves
    5-6% a block of 8 channels)."""
    from alphaprune import blend, channels
    from alphaprune.student import make_student

    monkeypatch.setattr(turns_module, "timed_in_turns", _params_as_ms)
    torch.manual_seed(0)
    shape = (3, 32, 32)
    model = build_model("resnet20", 10, in_channels=3, image_size=32)
    model.train()(torch.randn(32, *shape))
    model.eval()
    example = torch.randn(16, *shape, generator=torch.Generator().manual_seed(1))
    recipe = recipe_for("resnet20", 10, shape)
    teacher = tmp_path / "teacher.pt"
    save_model(teacher, model, recipe)
    plan = allocate(model, "blocks", 0.3, example, ["linear"], target="params")
    assert plan.dropped_blocks
    student = make_student(model, plan, "pretrained")
    blend.set_alpha(student, 0.0)
    student = blend.collapse(student)
    saved = tmp_path / "student.pt"
    save_model(saved, student, with_plan(recipe, plan))
    table, _ = stand_in_table(model, example, ["linear"])
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table.to_dict()))
    args = ["match", "--teacher", str(teacher), "--table", str(path), "--exclude", "linear"]
    assert main([*args, "--student", str(saved), "--tolerance", "0.06"]) == 0
    said = capsys.readouterr().out
    assert f"reference: {saved}: measured" in said and "matched:" in said
    amount = float(re.search(r"ranking: global, amount: ([0-9.]+)\}", said).group(1))
    planned = allocate(
        model, "channels", amount, example[:2], ["linear"], 8, "latency", table=table,
        ranking="global",
    )  # fmt: skip
    kept = {r: table.widths[r] - len(i) for r, i in planned.removed.items()}
    theirs = _params_as_ms([narrowed(model, kept, example[:2])], shape)[0][0]
    assert abs(theirs / count_params(student) - 1) <= 0.06  # blocks of 8 channels
    # the reference is the student as it is: no ranking of its own, and a teacher is no student
    assert main([*args, "--student", str(saved), "--ranking", "global"]) == 2
    assert "--student is timed as it is" in capsys.readouterr().err
    assert main([*args, "--student", str(teacher)]) == 2
    assert "is a teacher (nothing pruned), not a student" in capsys.readouterr().err
    other = tmp_path / "other.pt"  # the same weights, recorded for 64x64 inputs
    save_model(other, student, with_plan(recipe_for("resnet20", 10, (3, 64, 64)), plan))
    assert main([*args, "--student", str(other)]) == 2
    assert "is a student of resnet20 (10 classes, input 3x64x64)" in capsys.readouterr().err
    # a channel student is saved narrowed, its `layers` empty: a student all the same
    cut = allocate(model, "channels", 0.4, example[:2], ["linear"], 8, "params")
    narrow = make_student(model, cut, "pretrained")
    blend.set_alpha(narrow, 0.0)
    narrow = blend.collapse(narrow)
    record = channels.narrow_student(narrow, cut.removed, example[:1])
    saved = tmp_path / "channels.pt"
    save_model(saved, narrow, with_plan(recipe, cut, record))
    assert main([*args, "--student", str(saved), "--tolerance", "0.06"]) == 0
    assert f"reference: {saved}: measured" in capsys.readouterr().out
    assert main(["match", "--teacher", str(saved), "--table", str(path), "--amount", "0.4"]) == 2
    assert "is a student, not a teacher" in capsys.readouterr().err
    assert main(["plan", "--teacher", str(saved), "--branch", "channels"]) == 2
    assert "is a student, not a teacher" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one reference: a student, or an amount to plan one for
        main([*args, "--student", str(saved), "--amount", "0.5"])
    assert "argument --amount: not allowed with argument --student" in capsys.readouterr().err
