"""Each stage depends on exactly the code its command imports: the closures have the shape the
pipeline relies on, each stage's manifest lists them for DVC, and the digest a prune checkpoint
carries changes only with that stage's code."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest

from alphaprune.pipeline.provenance.codedeps import STAGES, code_digest, command, stage_code
from alphaprune.pipeline.provenance.manifests import manifest, write_manifests

REPO = Path(__file__).resolve().parents[3]
SRC = REPO / "src"


def modules(stage: str) -> set[str]:
    """alphaprune.x.y names of the stage's code."""
    return {
        ".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for p in stage_code(stage, SRC)
    }


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_runs_the_dispatcher_and_its_own_command(stage):
    names = modules(stage)
    assert {
        "alphaprune",
        "alphaprune.pipeline.cli",
        "alphaprune.pipeline.commands",
        f"alphaprune.pipeline.commands.{command(stage)}",
    } <= names
    others = {f"alphaprune.pipeline.commands.{command(s)}" for s in STAGES} - {
        f"alphaprune.pipeline.commands.{command(stage)}"
    }
    assert not names & others
    assert all(p.is_file() and p.suffix == ".py" for p in stage_code(stage, SRC))


def test_closures_keep_edits_local():
    """The rerun rules of the pipeline issue: plot code reruns plots (and the report after it),
    report code only the report, the fit loop the teacher and the prunes, never prepare."""
    fit_loop, plots, report = (
        "alphaprune.fit",
        "alphaprune.pipeline.report.plots",
        "alphaprune.pipeline.report.markdown",
    )
    assert plots in modules("plots") and report in modules("report")
    # how DVC's manifests are written is the `code` command's alone: no stage reruns for it
    assert not any("alphaprune.pipeline.provenance.manifests" in modules(s) for s in STAGES)
    for stage in STAGES:
        assert (plots in modules(stage)) == (stage == "plots"), stage
        assert (report in modules(stage)) == (stage == "report"), stage
        assert (fit_loop in modules(stage)) == (stage in ("pretrain", "prune")), stage
    # prepare depends on the params schema, not on training code (the schema imports no engine
    # module but the registry's error message).
    training = {"alphaprune.fit", "alphaprune.blend", "alphaprune.branches", "alphaprune.lsq"}
    assert not training & modules("prepare")
    # The teacher does not run the pruning machinery, so editing it keeps a long teacher: not
    # the allocator, not the branch kinds (adding or editing one reruns the prunes and what
    # reads students, never a teacher), not the code that reads a student back.
    kinds = {
        f"alphaprune.branches.{p.stem}" for p in (SRC / "alphaprune" / "branches").glob("*.py")
    }
    kinds -= {"alphaprune.branches.__init__", "alphaprune.branches.base"}
    assert {"alphaprune.branches.kinds", "alphaprune.branches.lowrank"} <= kinds
    assert not {
        "alphaprune.budget.allocator",
        "alphaprune.budget.plan",
        "alphaprune.lsq",
        "alphaprune.loading",
        "alphaprune.pipeline.stages.prune",
        *kinds,
    } & modules("pretrain")
    assert kinds <= modules("prune") and kinds <= modules("evaluate")


def test_no_module_imports_by_name_but_the_dispatcher():
    """modulefinder sees `import x` statements, not importlib.import_module("x"): a module
    imported by name would be missing from its stage's code, and edits to it would rerun
    nothing. The CLI dispatcher is the one place that does it (and the closures add the command
    module for it), and the package's lazy public API (`alphaprune.__init__`), which the
    pipeline never uses (next test)."""
    # (a method of that name, such as codedeps overriding ModuleFinder.import_module, is not)
    dynamic = re.compile(
        r"(?<!def )(?<!super\(\)\.)\bimport_module\(|\b__import__\(|\bimportlib\.util\b"
    )
    allowed = {"alphaprune/pipeline/cli.py", "alphaprune/__init__.py"}
    offenders = [
        str(p.relative_to(SRC))
        for p in (SRC / "alphaprune").rglob("*.py")
        if str(p.relative_to(SRC)) not in allowed and dynamic.search(p.read_text())
    ]
    assert offenders == []


def test_the_pipeline_imports_engine_modules_not_the_lazy_api():
    """`from alphaprune import fit` would reach alphaprune.fit through the lazy API, unseen
    by modulefinder: the pipeline imports each engine name from its module."""
    import alphaprune

    lazy = re.compile(r"^\s*from alphaprune import ([\w, ]+)$", re.M)
    offenders = [
        (str(p.relative_to(SRC)), name)
        for p in (SRC / "alphaprune").rglob("*.py")
        for names in lazy.findall(p.read_text())
        for name in (n.strip() for n in names.split(","))
        if name in alphaprune.__all__
    ]
    assert offenders == []


def test_code_digest_follows_only_the_stages_code(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(
        SRC / "alphaprune", src / "alphaprune", ignore=shutil.ignore_patterns("__pycache__")
    )
    before = code_digest("prune", src)
    assert before == code_digest("prune", SRC)  # names and contents, not where the copy lies
    plots = src / "alphaprune" / "pipeline" / "report" / "plots.py"
    assert plots.is_file()  # an edit of a file that is there, and is code of another stage
    assert plots.resolve() in {p.resolve() for p in stage_code("plots", src)}
    with plots.open("a") as f:
        f.write("# an edit the prune stage does not run\n")
    assert code_digest("prune", src) == before
    with (src / "alphaprune" / "fit.py").open("a") as f:
        f.write("# an edit of the fit loop\n")
    assert code_digest("prune", src) != before


def test_manifests_change_only_with_their_stages_code(tmp_path, monkeypatch):
    """A manifest is md5sum's listing of its stage's code, from the project root; an edit
    rewrites the manifests of the stages that run the edited file and leaves the others' bytes
    and times alone (DVC hashes the bytes: those stages do not rerun)."""
    project = tmp_path / "p"
    shutil.copytree(
        SRC / "alphaprune",
        project / "src" / "alphaprune",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    monkeypatch.chdir(project)
    lines = manifest("plots", "src").splitlines()
    assert len(lines) == len(stage_code("plots", "src"))
    for line in lines:
        md5, path = line.split("  ")
        assert path.startswith("src/alphaprune/")
        assert hashlib.md5(Path(path).read_bytes()).hexdigest() == md5
    out = Path("results/code")
    assert write_manifests("src", out) == list(STAGES)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.md5" for s in STAGES)
    times = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    for p in out.iterdir():
        os.utime(p, ns=(0, 0))  # so that a rewrite shows whatever the clock's resolution
    with Path("src/alphaprune/pipeline/report/plots.py").open("a") as f:
        f.write("# an edit of the plots\n")
    assert write_manifests("src", out) == ["plots"]
    assert {p.name for p in out.iterdir() if p.stat().st_mtime_ns != 0} == {"plots.md5"}
    assert set(times) == {p.name for p in out.iterdir()}
