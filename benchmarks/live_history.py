"""What rewriting history.csv/steps.csv during a run costs: one prune of a params file's variant
timed with the live rewrites (at most once a second), after every epoch, and with only the
final write, interleaved. Needs the prepared data and a teacher, e.g. after `make run`:

    python benchmarks/live_history.py --variant exp05 --repeats 7
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from alphaprune.pipeline.params.loader import load_params
from alphaprune.pipeline.stages.prune import prune
from alphaprune.pipeline.stages.training import Curves

POLICIES = {
    "at most once a second": Curves.update,
    "after every epoch": lambda self, result: self.write(result),
    "final write only": lambda self, result: None,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=Path, default=Path("params.yaml"))
    p.add_argument("--variant", default="exp05")
    p.add_argument("--data", type=Path, default=Path("data/prepared/digits.pt"))
    p.add_argument("--teacher", type=Path, default=Path("results/teacher/model.pt"))
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)  # as a Snakemake job with threads: 1
    params = load_params([args.params])
    wall = {name: [] for name in POLICIES}
    cpu = {name: [] for name in POLICIES}  # one thread: CPU time is the work, less noisy
    for _ in range(args.repeats):
        for name, update in POLICIES.items():
            Curves.update = update
            start, start_cpu = time.perf_counter(), time.process_time()
            prune(params, args.variant, args.data, args.teacher, Path(tempfile.mkdtemp()))
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    base = statistics.median(cpu["final write only"])
    for name in POLICIES:
        median = statistics.median(cpu[name])
        print(
            f"{name:22s} CPU median {median:.2f} s ({median / base - 1:+.1%})  "
            f"wall median {statistics.median(wall[name]):.2f} s  "
            f"CPU runs: {' '.join(f'{s:.2f}' for s in cpu[name])}"
        )


if __name__ == "__main__":
    main()
