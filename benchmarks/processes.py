"""One prune run in one process against the same run in several (`runtime.processes`, DDP over
gloo on the CPU; issue 24): seconds an epoch, and whether the students agree.

    python benchmarks/processes.py [--archive ../shared/data/cifar10-jpg.tar.gz] [--epochs 2]

Prepares the CIFAR-10 JPEG archive (resident), trains a ResNet-20 teacher for one epoch (its
accuracy does not matter here), then prunes it with the seed's recipe (pointwise branches,
frozen teacher: BatchNorm in eval mode, so the processes train the same student) for
`--epochs` epochs (the last at α = 0) with `runtime.processes` 1 and N, each through the
`alphaprune prune` command as the pipeline runs it. Every process of N gets an equal share of
the cores. Prints the median epoch time of each and the largest weight difference between the
two students. Run it with nothing else running.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

from alphaprune.loading import load_model

CLI = [sys.executable, "-m", "alphaprune.pipeline.cli"]


def _params(archive: Path, epochs: int) -> dict:
    return {
        "data": {"name": "imagefolder", "root": str(archive.resolve())},
        "model": {"name": "resnet20"},
        "teacher": {"epochs": 1, "batch_size": 256},
        "prune": {
            "branch": "pointwise",
            "init": "random",
            "trainable": "branches",
            "recalibrate_bn": 0,
            "schedule": {"kind": "linear", "steps": epochs - 1},
            "advance": {"mode": "batch"},
            "epochs": epochs,
            "finetune_epochs": 1,
            "batch_size": 256,
        },
        "variants": {"v": {}},
        "runtime": {"device": "cpu", "data_placement": "device"},
    }


def _run(args: list[str], env: dict) -> None:
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archive", type=Path, default=Path("../shared/data/cifar10-jpg.tar.gz"))
    p.add_argument("--epochs", type=int, default=3, help="of which the last is at α = 0")
    p.add_argument("--processes", type=int, default=2)
    a = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = root / "params.yaml"
        params.write_text(yaml.safe_dump(_params(a.archive, a.epochs)))
        env = {**os.environ, "OMP_NUM_THREADS": str(cores)}
        base = ["--params", str(params)]
        _run(["prepare", *base, "--out", str(root / "data.pt")], env)
        _run(["pretrain", *base, "--data", str(root / "data.pt"), "--out", str(root / "t")], env)
        times = {}
        for n in (1, a.processes):
            threads = str(max(1, cores // n))
            out = root / f"p{n}"
            prune = ["prune", *base, "--set", f"runtime.processes={n}", "--variant", "v"]
            prune += ["--data", str(root / "data.pt"), "--teacher", str(root / "t" / "model.pt")]
            _run([*prune, "--out", str(out)], {**env, "OMP_NUM_THREADS": threads})
            times[n] = pd.read_csv(out / "history.csv")["seconds"]
            print(
                f"processes {n} × {threads} threads: {times[n].median():.1f} s an epoch "
                f"(epochs: {', '.join(f'{t:.1f}' for t in times[n])})",
                flush=True,
            )
        a_, b_ = (load_model(root / f"p{n}" / "student.pt")[0].state_dict() for n in times)
        diff = max((a_[k].double() - b_[k].double()).abs().max().item() for k in a_)
        ratio = times[1].median() / times[a.processes].median()
        print(f"speed-up with {a.processes} processes: {ratio:.2f}×; students differ by {diff:.1e}")


if __name__ == "__main__":
    main()
