"""The suite's own configuration: the modules tests/conftest.py marks `numerics` (which `make
test-isa` runs as a lesser CPU would) are test modules that exist; a renamed one would drop out
of that run silently."""

from __future__ import annotations

from pathlib import Path

from conftest import NUMERICS

TESTS = Path(__file__).resolve().parent


def test_every_numerics_module_exists():
    stems = {p.stem for p in TESTS.rglob("test_*.py")}
    assert NUMERICS <= stems, sorted(NUMERICS - stems)
