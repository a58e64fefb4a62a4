"""The README's library example, run exactly as written there."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import alphaprune as ap

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text()
    block = re.search(
        r"<!-- library-example.*?-->\n```python\n(.*?)```\n<!-- /library-example", text, re.S
    )
    assert block, "README.md lost its library example"
    return block.group(1)


def test_the_readme_library_example_runs_and_prunes(tmp_path, monkeypatch):
    code = _example()
    assert len(code.strip().splitlines()) <= 16  # "about ten lines"
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    teacher, student, plan, x = scope["teacher"], scope["student"], scope["plan"], scope["x"]
    # The student is the planned size, with no blends left, and it loaded from the file.
    assert plan.achieved >= 0.65
    assert ap.count_params(student) == plan.student_params
    assert ap.count_params(student) <= 0.35 * ap.count_params(teacher)
    assert not list(ap.blends(student))
    assert (tmp_path / "student.pt").exists() and scope["recipe"]["plan"]["kind"] == "lowrank"
    assert student(x).shape == (16, 10)
