"""Helpers for tests that run the pipeline in a temporary copy of the project (Snakemake, DVC,
SLURM): the copy, a tiny configuration, and a subprocess runner that reports failures whole."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
PROJECT_FILES = [
    "Snakefile",
    "dvc.yaml",
    ".dvcignore",
    "workflow",
    "src/alphaprune",
    "data/raw/README.md",
    ".gitignore",
]  # not data/raw itself: it may hold a downloaded CIFAR-10

# The seed's recipe (params.yaml's variant `seed`): the prune keys where it differs from the
# defaults, for a test grid whose variants are changes to it.
SEED = {
    "branch": "pointwise",
    "init": "random",
    "trainable": "branches",
    "recalibrate_bn": 0,
    "schedule": {"kind": "exponential"},
}

TINY = {
    "seed": 0,
    # dvc.yaml expands the replicates from params.yaml itself: the key must be written out.
    "replicates": {"seeds": [0], "teachers": [0]},
    "data": {"name": "digits", "root": "data/raw"},
    "model": {"name": "cnn"},
    "teacher": {"epochs": 3},
    "prune": {
        **SEED,
        "schedule": {"kind": "exponential", "rate": 0.5, "alpha_min": 0.2},
        "advance": {"patience": 1, "max_epochs": 1},
        "epochs": 4,
        "finetune_epochs": 1,
    },
    # b-2 is one α step (oneshot): its checkpoint/ output must exist all the same for DVC.
    # Four variants: after the 2-thread teacher, four 1-thread prunes are ready at once, which
    # is where an over-eager scheduler shows (test_snakemake_never_runs_more_threads_than_cores).
    "variants": {
        "a": {"schedule": {"rate": 0.5}},
        "b-2": {"branch": "lowrank", "schedule": {"kind": "oneshot"}},
        "c": {"branch": "channels", "init": "pretrained"},  # narrowed at α = 0, mid-run
        "d": {"branch": "sparse", "schedule": {"kind": "oneshot"}},
    },
    "eval": {"tolerance_pp": 1.0},  # dvc.yaml declares the key: it must be there
    "latency": {"seconds": 0.01, "rounds": 1, "threads": 1, "throughput_batch": 8, "table": None},
    # dvc.yaml declares the keys that can change a result: they must be there
    "runtime": {"device": "cpu", "precision": "auto", "compile": False, "sync_batchnorm": False},
}


def run(args, cwd, check=True, env=None) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        args, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def make_project(root: Path, params: dict) -> Path:
    """A copy of the workflow files with `params` as params.yaml, under git and DVC."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src, dst = REPO / name, root / name
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], root)
    run(
        [
            "git",
            "-c",
            "user.email=t@t",
            "-c",
            "user.name=t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "init",
        ],
        root,
    )
    run([BIN / "dvc", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "project"], root)
    return root


def edit_params(root: Path, change) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    change(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


# A stand-in for the `alphaprune` command that runs the real one and appends, per job, its
# command, start and end times and the threads Snakemake gave it (OMP_NUM_THREADS) to a log.
_TIMED = """#!{python}
import json, os, subprocess, sys, time
start = time.time()
code = subprocess.call([{real!r}, *sys.argv[1:]])
job = {{"command": sys.argv[1], "start": start, "end": time.time(),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0"))}}
with open({log!r}, "a") as f:
    f.write(json.dumps(job) + "\\n")
sys.exit(code)
"""


def timed_jobs_env(root: Path) -> tuple[dict, Path]:
    """An environment whose `alphaprune` logs every job's times to the returned file."""
    shim, log = root / ".timed-bin", root / "jobs.jsonl"
    shim.mkdir(exist_ok=True)
    exe = shim / "alphaprune"
    exe.write_text(_TIMED.format(python=sys.executable, real=str(BIN / "alphaprune"), log=str(log)))
    exe.chmod(0o755)
    return {**ENV, "PATH": f"{shim}{os.pathsep}{ENV['PATH']}"}, log


def peak_threads(jobs: list[dict]) -> int:
    """The largest sum of the threads of jobs running at the same instant."""
    events = [(j["start"], j["threads"]) for j in jobs] + [(j["end"], -j["threads"]) for j in jobs]
    running = peak = 0
    for _, change in sorted(events, key=lambda e: (e[0], e[1])):  # at a tie, ends come first
        running += change
        peak = max(peak, running)
    return peak
