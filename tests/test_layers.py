"""The two layers: the engine (`alphaprune`, less `alphaprune.pipeline`) imports neither the
pipeline nor the pipeline's libraries. `make lint` checks it with import-linter; these tests
check that the contract covers every engine module and that the engine runs without them."""

from __future__ import annotations

import ast
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
    rooms = _contract(PLANNING_CONTRACT)["source_modules"]
    assert all(any(m == r or m.startswith(f"{r}.") for r in rooms) for m in imported), imported
    code = (
        "import sys\n"
        "from alphaprune.pipeline.provenance.codedeps import STAGES, stage_code\n"
        "from alphaprune.pipeline.params.loader import merge_files, resolve\n"
        "from alphaprune.pipeline.provenance.records import source_digest, stage_values\n"
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


ROOMS_CONTRACT = "the pipeline's rooms are layers"
PIPELINE = ENGINE / "pipeline"


def test_every_pipeline_module_is_in_a_room():
    """Beside the CLI (cli.py, commands/), the pipeline's code lives in the rooms the layers
    contract orders: a module added loose at the top, or in a new room, escapes the contract."""
    layers = _contract(ROOMS_CONTRACT)["layers"]
    rooms = {name.split(".")[-1] for layer in layers for name in layer.split(" | ")}
    assert {p.name for p in PIPELINE.glob("*.py")} == {"__init__.py", "cli.py"}
    assert {p.name for p in PIPELINE.iterdir() if p.is_dir() and p.name != "__pycache__"} == (
        rooms - {"cli"}
    )


def test_every_package_holds_a_docstring_only():
    """A package's __init__ runs whenever any module in it is imported: a definition there
    would join every stage's code closure that touches the package."""
    engine = [ENGINE / package / "__init__.py" for package in ("branches", "budget")]
    for init in [*PIPELINE.glob("**/__init__.py"), *engine]:
        tree = ast.parse(init.read_text())
        body = [
            node
            for node in tree.body
            if not isinstance(node, ast.ImportFrom) or node.module != "__future__"
        ]
        assert len(body) == 1 and isinstance(body[0], ast.Expr), init
        assert isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)


def _imports(path: Path) -> set[str]:
    """The alphaprune modules `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.split(".")[0] == "alphaprune"}


def test_no_import_circle_in_the_package():
    """No two modules of src/alphaprune import each other, directly or through others, even
    where one side imports late (inside a function): a circle works only by that accident."""
    modules = {
        ".".join(p.relative_to(ENGINE.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in ENGINE.rglob("*.py")
    }
    edges = {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    # a package's __init__ is not an edge of a module inside it: importing a.b runs a first
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for nxt in edges[name]:
            if state.get(nxt) == 1:
                raise AssertionError(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[name] = 2

    for name in sorted(modules):
        if name not in state:
            visit(name, [name])
