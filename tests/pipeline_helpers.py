"""Helpers for tests that run the pipeline in a temporary copy of the project (Snakemake, DVC,
SLURM): the copy, a tiny configuration, and a subprocess runner that reports failures whole."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
PROJECT_FILES = [
    "Snakefile",
    "dvc.yaml",
    ".dvcignore",
    "workflow",
    "src/alphaprune",
    "data/raw/README.md",
]  # not data/raw itself: it may hold a downloaded CIFAR-10

TINY = {
    "seed": 0,
    "data": {"name": "digits", "root": "data/raw"},
    "model": {"name": "cnn"},
    "teacher": {"epochs": 3},
    "prune": {
        "schedule": {"kind": "exponential", "rate": 0.5, "alpha_min": 0.2},
        "advance": {"patience": 1, "max_epochs": 1},
        "epochs": 4,
        "finetune_epochs": 1,
    },
    # b-2 is one α step (oneshot): its checkpoint/ output must exist all the same for DVC.
    "variants": {
        "a": {"schedule": {"rate": 0.5}},
        "b-2": {"branch": "lowrank", "schedule": {"kind": "oneshot"}},
    },
    "eval": {"latency_seconds": 0.02},
    "runtime": {"device": "cpu"},
}


def run(args, cwd, check=True) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=900)
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
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty",
         "-m", "init"], root)  # fmt: skip
    run([BIN / "dvc", "init", "-q"], root)
    run(["git", "add", "-A"], root)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "project"], root)
    return root


def edit_params(root: Path, change) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    change(params)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
