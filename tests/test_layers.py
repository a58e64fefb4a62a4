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


ENGINE_CONTRACT = "the engine imports neither the pipeline nor its libraries"
PLANNING_CONTRACT = "planning a run imports no torch"


def _contract(name: str = ENGINE_CONTRACT) -> dict:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["name"] == name]
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


def test_planning_a_run_imports_no_torch():
    """What Snakemake imports to build its DAG (workflow/rules/common.smk) resolves params.yaml
    and lists each stage's code without importing torch (1.2 s a `snakemake -n`)."""
    smk = (REPO / "workflow" / "rules" / "common.smk").read_text()
    imported = {line.split()[1] for line in smk.splitlines() if line.startswith("from alphaprune")}
    assert imported <= set(_contract(PLANNING_CONTRACT)["source_modules"])
    code = (
        "import sys\n"
        "from alphaprune.pipeline.codedeps import STAGES, stage_code\n"
        "from alphaprune.pipeline.paramsfile import merge_files, resolve\n"
        "from alphaprune.pipeline.provenance import source_digest, stage_values\n"
        f"raw = merge_files([{str(REPO / 'params.yaml')!r}])\n"
        "params = resolve(raw)\n"
        f"[stage_code(s, {str(REPO / 'src')!r}) for s in STAGES]\n"
        "[stage_values(raw, s, next(iter(params.variants))) for s in STAGES]\n"
        f"source_digest({str(REPO / 'data' / 'raw')!r})\n"
        "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
