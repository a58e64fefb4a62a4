"""`alphaprune code`: write each stage's code manifest (its source files and their md5s).

DVC's `code` stage runs it after any edit under src/alphaprune, and every other stage depends on
its own manifest (`results/code/<stage>.md5`): the manifests an edit leaves byte for byte as they
were rerun nothing, so an edit of the plots reruns plots and report and never a teacher. After a
code edit `dvc status` names the `code` stage alone; `dvc repro code` then `dvc status` lists the
stages the edit reruns. (The Snakefile finds the same files itself at every run.)
"""

from __future__ import annotations

import logging
from pathlib import Path

from alphaprune.errors import UserError
from alphaprune.pipeline.provenance.codedeps import PACKAGE, STAGES
from alphaprune.pipeline.provenance.manifests import write_manifests

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    p.add_argument(
        "--src",
        type=Path,
        default=Path("src"),
        help="the folder holding the alphaprune package (default: ./src)",
    )
    p.add_argument("--out", type=Path, required=True, help="the folder of the manifests")


def run(args) -> None:
    if not (args.src / PACKAGE / "__init__.py").is_file():
        raise UserError(
            f"--src {args.src}: no {PACKAGE} package there; run this from the project's root "
            f"(the folder holding src/{PACKAGE}) or pass --src"
        )
    write_manifests(args.src, args.out)  # (DVC removes a stage's outputs before it runs it)
    log.info("wrote the code manifests of the %d stages to %s", len(STAGES), args.out)
