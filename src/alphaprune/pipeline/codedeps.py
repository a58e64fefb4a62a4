"""The source files each pipeline stage runs, so that an edit reruns exactly the stages whose
code it touches: editing the plots reruns plots and report, editing the fit loop the teacher and
the prunes, and neither reruns `prepare`.

A stage's code is the import closure, within this package, of the CLI dispatcher and of the
stage's command module (`alphaprune.pipeline.commands.<command>`: the stage's name, but for
`export_teacher`, which runs `alphaprune export`), found by the standard library's
`modulefinder` (which also follows imports inside functions, so it errs on the side of rerunning).
The Snakefile computes it at every run; dvc.yaml lists it in each stage's `deps`, written by
`make dvc-code` (`alphaprune.pipeline.dvcyaml`) and kept current by a test; and a prune checkpoint's
fingerprint hashes it, so a killed prune still resumes after an edit elsewhere.
"""

from __future__ import annotations

import hashlib
from modulefinder import ModuleFinder
from pathlib import Path

PACKAGE = "alphaprune"
STAGES = (
    "prepare",
    "pretrain",
    "export_teacher",
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
    finder = ModuleFinder(path=[str(src)])  # only the package is searched: torch etc. are skipped
    for module in (f"{PACKAGE}.pipeline.cli", f"{PACKAGE}.pipeline.commands.{command(stage)}"):
        finder.import_hook(module)
    root = Path(src).resolve()
    ours = (m for name, m in finder.modules.items() if name.split(".")[0] == PACKAGE)
    return sorted(Path(src) / Path(m.__file__).resolve().relative_to(root) for m in ours)


def installed_src() -> Path:
    """The folder holding the package this process imports (its code, whatever the cwd)."""
    return Path(__file__).resolve().parents[2]


def code_digest(stage: str, src: Path | None = None) -> str:
    """A hash of the code `stage`'s command runs (names and contents), by default of the
    package this process imports."""
    src = installed_src() if src is None else Path(src)
    h = hashlib.sha256()
    for path in stage_code(stage, src):
        h.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
