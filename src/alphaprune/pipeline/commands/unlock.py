"""`alphaprune unlock`: remove the lock a killed Snakemake run left, if no run is alive here.

Snakemake locks its working folder while it runs. A run killed outright (SIGKILL, the OOM killer,
a power loss) leaves the lock behind and the next run refuses to start. `snakemake --unlock`
removes it even from under a run that is still working; this checks first that none is.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from alphaprune.errors import UserError
from alphaprune.pipeline.provenance.codedeps import STAGES

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    p.add_argument(
        "--dir",
        type=Path,
        default=Path("."),
        help="the workflow's folder (default: the current one)",
    )


def run(args) -> None:
    folder = args.dir.resolve()
    locks = folder / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        log.info("no Snakemake lock in %s", folder)
        return
    alive = live_runs(folder)
    if alive:
        shown = "; ".join(f"pid {pid}: {cmd}" for pid, cmd in alive.items())
        raise UserError(
            f"a run is still working in {folder} ({shown}): wait for it to finish, or stop it, "
            "before starting another"
        )
    done = subprocess.run(
        [sys.executable, "-m", "snakemake", "--unlock"], cwd=folder, capture_output=True, text=True
    )
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"snakemake --unlock failed in {folder}: {last}")
    log.info("removed the lock a killed Snakemake run left in %s (none is running there)", folder)


def live_runs(folder: Path) -> dict[int, str]:
    """pid -> command of the processes working in `folder` that belong to a run: Snakemake
    itself, and pipeline jobs (`alphaprune <stage>`), which outlive a Snakemake killed alone.
    Only this user's processes can be seen; on a cluster, jobs on other nodes cannot."""
    import psutil  # Snakemake's own dependency

    alive = {}
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        info = proc.info
        program, args = _program(info["cmdline"] or [])
        in_run = program == "snakemake" or (program == "alphaprune" and set(args) & set(STAGES))
        if (
            in_run
            and info["pid"] != os.getpid()
            and info["cwd"]
            and Path(info["cwd"]).resolve() == folder
        ):
            alive[info["pid"]] = " ".join([program, *args[:2]])
    return alive


def _program(cmdline: list[str]) -> tuple[str, list[str]]:
    """The program a command line runs, and its arguments: `x ...`, `python .../x ...` or
    `python -m x ...`."""
    if len(cmdline) > 2 and cmdline[1] == "-m":
        return cmdline[2], cmdline[3:]
    if len(cmdline) > 1 and Path(cmdline[0]).name.startswith("python"):
        return Path(cmdline[1]).name, cmdline[2:]
    return (Path(cmdline[0]).name, cmdline[1:]) if cmdline else ("", [])
