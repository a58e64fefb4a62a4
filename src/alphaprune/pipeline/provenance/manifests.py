"""Each stage's code manifest for DVC: `results/code/<stage>.md5`, the files its command runs
(`codedeps.stage_code`) with their md5s, as `md5sum` prints them.

DVC's `code` stage (`alphaprune code`, run on any edit under src/alphaprune) writes them, the
Snakefile too before it records a run in DVC's lock, and every other stage depends on its own: a
stage reruns when its manifest's bytes change, that is, when a file it runs does. (Listing the
files in dvc.yaml itself put some 50 entries a stage in DVC's lock, which every `dvc` command
parses: 0.73 MB on the default grid, `dvc status` 5.1 s, the commit after a Snakemake run 17 s.)
A module of its own, imported by no stage's command but `code`: changing how manifests are
written reruns no prune.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from alphaprune.pipeline.provenance.codedeps import STAGES, stage_code

MANIFESTS = "results/code"  # where dvc.yaml's stages read them (relative to the project root)


def manifest(stage: str, src: str | Path) -> str:
    """`stage`'s code as `md5sum` prints it: a line per source file, its md5 and its path (under
    `src` as given, so `md5sum -c` checks it from the project root)."""
    return "".join(
        f"{hashlib.md5(path.read_bytes()).hexdigest()}  {path.as_posix()}\n"
        for path in stage_code(stage, src)
    )


def write_manifests(src: str | Path, out: str | Path = MANIFESTS) -> list[str]:
    """Every stage's manifest as `out/<stage>.md5`; a file whose bytes would not change is left
    as it is, and one that would is replaced (a new file: DVC may have linked the old one to its
    cache). The stages whose manifest was written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stage in STAGES:
        path, text = out / f"{stage}.md5", manifest(stage, src)
        if path.is_file() and path.read_text() == text:
            continue
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        written.append(stage)
    return written
