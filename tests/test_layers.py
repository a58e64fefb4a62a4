"""The two layers: the engine (`alphaprune`, less `alphaprune.pipeline`) imports neither the
pipeline nor the pipeline's libraries. `make lint` checks it with import-linter; these tests
check that the contract covers every engine module and that the engine runs without them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tomllib

import alphaprune

REPO = Path(__file__).resolve().parents[1]
ENGINE = Path(alphaprune.__file__).parent


def _contract() -> dict:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = config["contracts"]
    return contract


def test_the_import_contract_lists_every_engine_module():
    """A new engine module not listed would escape the contract."""
    modules = {f"alphaprune.{p.stem}" for p in ENGINE.glob("*.py") if p.stem != "__init__"}
    packages = {  # a package's submodules are under its contract (import-linter's default)
        f"alphaprune.{p.parent.name}"
        for p in ENGINE.glob("*/__init__.py")
        if p.parent.name != "pipeline"
    }
    assert set(_contract()["source_modules"]) == modules | packages


def test_the_contract_forbids_the_pipeline_and_its_libraries():
    forbidden = set(_contract()["forbidden_modules"])
    assert {"alphaprune.pipeline", "pydantic", "pandas", "matplotlib", "yaml"} <= forbidden


def test_the_engine_imports_without_the_pipelines_libraries():
    """Importing every engine module with pydantic, pandas, matplotlib and yaml made
    unimportable: the engine works where only torch and numpy are installed."""
    modules = sorted(f"alphaprune.{p.stem}" for p in ENGINE.glob("*.py"))
    code = (
        "import sys\n"
        "for name in ('pydantic', 'pandas', 'matplotlib', 'yaml', 'scipy', 'statsmodels'):\n"
        "    sys.modules[name] = None  # import raises ImportError\n"
        f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
        "import alphaprune\n[getattr(alphaprune, n) for n in alphaprune.__all__]\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
