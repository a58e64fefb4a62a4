"""The source files each pipeline stage runs, so that an edit reruns exactly the stages whose
code it touches: editing the plots reruns plots and report, editing the fit loop the teacher and
the prunes, and neither reruns `prepare`.

A stage's code is the import closure, within this package, of the CLI dispatcher and of the
stage's command module (`alphaprune.commands.<stage>`), found by the standard library's
`modulefinder` (which also follows imports inside functions, so it errs on the side of rerunning).
The Snakefile computes it at every run; dvc.yaml lists it in each stage's `deps`, written by
`python -m alphaprune.codedeps dvc.yaml` and kept current by a test; and a prune checkpoint's
fingerprint hashes it, so a killed prune still resumes after an edit elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from modulefinder import ModuleFinder
from pathlib import Path

PACKAGE = "alphaprune"
STAGES = ("prepare", "pretrain", "prune", "evaluate", "plots", "report")


def stage_code(stage: str, src: str | Path) -> list[Path]:
    """The package's source files that `alphaprune <stage>` imports, found under `src` (the
    folder holding the package), as paths starting with `src`."""
    finder = ModuleFinder(path=[str(src)])  # only the package is searched: torch etc. are skipped
    for module in (f"{PACKAGE}.cli", f"{PACKAGE}.commands.{stage}"):
        finder.import_hook(module)
    root = Path(src).resolve()
    ours = (m for name, m in finder.modules.items() if name.split(".")[0] == PACKAGE)
    return sorted(Path(src) / Path(m.__file__).resolve().relative_to(root) for m in ours)


def installed_src() -> Path:
    """The folder holding the package this process imports (its code, whatever the cwd)."""
    return Path(__file__).resolve().parents[1]


def code_digest(stage: str, src: Path | None = None) -> str:
    """A hash of the code `alphaprune <stage>` runs (names and contents), by default of the
    package this process imports."""
    src = installed_src() if src is None else Path(src)
    h = hashlib.sha256()
    for path in stage_code(stage, src):
        h.update(path.relative_to(src).as_posix().encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------ dvc.yaml
def expected_code_deps(src: str = "src") -> dict[str, list[str]]:
    """stage -> the code deps dvc.yaml should list (paths relative to the project root)."""
    return {stage: [p.as_posix() for p in stage_code(stage, src)] for stage in STAGES}


def _deps(body: dict) -> list:
    return body["do"]["deps"] if "do" in body else body["deps"]  # foreach stages nest under do


def listed_code_deps(dvc_yaml: Path, src: str = "src") -> dict[str, list[str]]:
    """stage -> the code deps `dvc_yaml` lists now."""
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {s: [d for d in _deps(b) if str(d).startswith(f"{src}/")] for s, b in stages.items()}


def sync_dvc_yaml(dvc_yaml: Path, src: str = "src") -> bool:
    """Rewrite each stage's code deps in `dvc_yaml` (its entries under `src/`), keeping all
    else, comments included; True if the file changed."""
    from ruamel.yaml import YAML  # DVC's own YAML library: a round trip keeps the comments

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)  # the file's own style: "  - item"
    doc = yaml.load(dvc_yaml.read_text())
    changed = False
    for stage, code in expected_code_deps(src).items():
        deps = _deps(doc["stages"][stage])
        old = [i for i, d in enumerate(deps) if str(d).startswith(f"{src}/")]
        if [deps[i] for i in old] == code:
            continue
        at = old[0] if old else 0
        for i in reversed(old):
            del deps[i]
        for offset, path in enumerate(code):
            deps.insert(at + offset, path)
        changed = True
    if changed:
        with dvc_yaml.open("w") as f:
            yaml.dump(doc, f)
    return changed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m alphaprune.codedeps",
        description="Write each stage's source files into dvc.yaml's deps (run it from the "
        "project root).",
    )
    p.add_argument("dvc_yaml", type=Path, nargs="?", default=Path("dvc.yaml"))
    p.add_argument("--check", action="store_true", help="only report; exit 1 if out of date")
    args = p.parse_args(argv)
    if not args.check:
        changed = sync_dvc_yaml(args.dvc_yaml)
        print(f"{args.dvc_yaml}: {'updated' if changed else 'up to date'}")
        return 0
    expected, listed = expected_code_deps(), listed_code_deps(args.dvc_yaml)
    stale = [s for s in STAGES if listed.get(s) != expected[s]]
    if stale:
        print(f"{args.dvc_yaml}: the code deps of {', '.join(stale)} are out of date; run "
              f"`python -m alphaprune.codedeps {args.dvc_yaml}`", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
