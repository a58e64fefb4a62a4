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

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    p.add_argument("--dir", type=Path, default=Path("."),
                   help="the workflow's folder (default: the current one)")  # fmt: skip


def run(args) -> None:
    folder = args.dir.resolve()
    locks = folder / ".snakemake" / "locks"
    if not locks.is_dir() or not any(locks.iterdir()):
        log.info("no Snakemake lock in %s", folder)
        return
    alive = live_runs(folder)
    if alive:
        raise UserError(
            f"Snakemake is running in {folder} (pid {', '.join(map(str, alive))}): wait for it "
            "to finish, or stop it, before starting another run"
        )
    done = subprocess.run([sys.executable, "-m", "snakemake", "--unlock"], cwd=folder,
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"snakemake --unlock failed in {folder}: {last}")
    log.info("removed the lock a killed Snakemake run left in %s (none is running there)", folder)


def live_runs(folder: Path) -> list[int]:
    """The pids of Snakemake processes working in `folder` (of this user, where others'
    working folders cannot be read)."""
    import psutil  # Snakemake's own dependency

    pids = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        info = proc.info
        if info["pid"] == os.getpid() or not _is_snakemake(info["cmdline"] or []):
            continue
        if info["cwd"] and Path(info["cwd"]).resolve() == folder:
            pids.append(info["pid"])
    return pids


def _is_snakemake(cmdline: list[str]) -> bool:
    """`snakemake ...`, `python .../bin/snakemake ...` or `python -m snakemake ...`."""
    return any(Path(a).name == "snakemake" for a in cmdline[:2]) or cmdline[1:3] == [
        "-m",
        "snakemake",
    ]
