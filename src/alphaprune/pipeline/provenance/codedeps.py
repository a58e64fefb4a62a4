"""The source files each pipeline stage runs, so that an edit reruns exactly the stages whose
code it touches: editing the plots reruns plots and report, editing the fit loop the teacher and
the prunes, and neither reruns `prepare`.

A stage's code is the import closure, within this package, of the CLI dispatcher and of the
stage's command module (`alphaprune.pipeline.commands.<command>`: the stage's name, but for
`export_teacher`, which runs `alphaprune export`), found by the standard library's
`modulefinder` (which also follows imports inside functions, so it errs on the side of rerunning).
The Snakefile computes it at every run; for DVC it is written as each stage's manifest
(`provenance.manifests`); a prune checkpoint's fingerprint hashes the same closure, so a killed
prune still resumes after an edit elsewhere.
"""

from __future__ import annotations

import hashlib
from modulefinder import ModuleFinder
from pathlib import Path

import alphaprune

PACKAGE = "alphaprune"
STAGES = (
    "prepare",
    "pretrain",
    "export_teacher",
    "table",
    "prune",
    "evaluate",
    "export",
    "latency",
    "plots",
    "report",
)
_COMMANDS = {"export_teacher": "export"}  # stages whose command is not their name


def command(stage: str) -> str:
    """The `alphaprune` command `stage` runs."""
    return _COMMANDS.get(stage, stage)


def stage_code(stage: str, src: str | Path) -> list[Path]:
    """The package's source files that `stage`'s command imports, found under `src` (the
    folder holding the package), as paths starting with `src`."""
    graph = _graph(Path(src))
    roots = [f"{PACKAGE}.pipeline.cli", f"{PACKAGE}.pipeline.commands.{command(stage)}"]
    seen, todo = set(), [name for root in roots for name in graph.reached[root]]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.edges.get(name, ()))
    root = Path(src).resolve()
    files = {graph.files[n] for n in seen if n.split(".")[0] == PACKAGE and n in graph.files}
    return sorted(Path(src) / Path(f).resolve().relative_to(root) for f in files)


class _Graph(ModuleFinder):
    """`modulefinder` over the package once, recording which module imports which (`edges`)
    and what importing each stage's root modules loads (`reached`), so that every stage's
    closure comes from one scan of the sources rather than one each (the Snakefile asks for
    nine at every run)."""

    def __init__(self, src: Path):
        super().__init__(path=[str(src)])  # only the package is searched: torch etc. are skipped
        self.edges: dict[str, set[str]] = {}
        self.reached: dict[str, set[str]] = {}
        self._callers: list[str] = []

    def load(self, root: str) -> None:
        self._callers.append(f"<{root}>")
        try:
            self.import_hook(root)
        finally:
            self._callers.pop()
        self.reached[root] = self.edges.pop(f"<{root}>", set())

    def _safe_import_hook(self, name, caller, fromlist, level=-1):
        self._callers.append(caller.__name__ if caller else "")
        try:
            super()._safe_import_hook(name, caller, fromlist, level)
        finally:
            self._callers.pop()

    def import_module(self, partname, fqname, parent):
        module = super().import_module(partname, fqname, parent)
        if module is not None:
            self._edge(fqname)
        return module

    def ensure_fromlist(self, m, fromlist, recursive=0):
        super().ensure_fromlist(m, fromlist, recursive)
        for sub in fromlist:  # `from package import module`, the module loaded before
            if f"{m.__name__}.{sub}" in self.modules:
                self._edge(f"{m.__name__}.{sub}")

    def _edge(self, fqname: str) -> None:
        if self._callers:
            self.edges.setdefault(self._callers[-1], set()).add(fqname)

    @property
    def files(self) -> dict[str, str]:
        return {name: m.__file__ for name, m in self.modules.items() if m.__file__}


_GRAPHS: dict[tuple, _Graph] = {}


def _graph(src: Path) -> _Graph:
    """The import graph of the package under `src`, rebuilt when a source file changes."""
    root = src.resolve()
    stamp = tuple(
        (str(p), p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted((root / PACKAGE).rglob("*.py"))
    )
    key = (str(root), stamp)
    if key not in _GRAPHS:
        graph = _Graph(root)
        graph.load(f"{PACKAGE}.pipeline.cli")
        for stage in STAGES:
            graph.load(f"{PACKAGE}.pipeline.commands.{command(stage)}")
        _GRAPHS.clear()
        _GRAPHS[key] = graph
    return _GRAPHS[key]


def installed_src() -> Path:
    """The folder holding the package this process imports (its code, whatever the cwd)."""
    return Path(alphaprune.__file__).resolve().parents[1]


def code_digest(stage: str, src: Path | None = None) -> str:
    """A hash of the code `stage`'s command runs (names and contents), by default of the
    package this process imports."""
    src = installed_src() if src is None else Path(src)
    h = hashlib.sha256()
    for path in stage_code(stage, src):
        h.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
