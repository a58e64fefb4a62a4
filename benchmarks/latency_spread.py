"""How close together repeated `alphaprune latency` jobs land, for several `latency.seconds` and
`latency.rounds`: what a shorter timing costs in precision.

    python benchmarks/latency_spread.py --teacher results/teacher/t0/model.pt \\
        --student results/variants/exp05/t0-s0/student.pt [--repeats 5] [--setting 0.1:3 ...]

Each setting (seconds:rounds) runs the command `--repeats` times, one after the other, as the
pipeline's stage would (a process each, so start-up is in the wall time); prints each speedup's
range over the repeats and the mean wall time of a job. Needs `student.onnx` beside the student
and, if present, uses `model.onnx` beside the teacher. Run it with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEEDUPS = ("ort_latency", "ort_throughput", "eager_latency", "eager_throughput")


def run(args, seconds: float, rounds: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "alphaprune.pipeline.cli", "latency", "--params", args.params]
    cmd += ["--set", f"latency.seconds={seconds}", "--set", f"latency.rounds={rounds}"]
    cmd += ["--teacher", str(args.teacher), "--student", str(args.student)]
    cmd += ["--onnx", str(args.student.with_suffix(".onnx")), "--out", str(out)]
    if args.teacher.with_suffix(".onnx").exists():
        cmd += ["--teacher-onnx", str(args.teacher.with_suffix(".onnx"))]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--student", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--setting", action="append", help="seconds:rounds (repeatable)")
    args = p.parse_args()
    settings = args.setting or ["0.1:3", "0.03:3", "0.03:2", "0.02:3"]
    print(f"{args.student}, {args.repeats} jobs a setting; speedup ranges (min-max)")
    with tempfile.TemporaryDirectory() as tmp:
        for setting in settings:
            seconds, rounds = float(setting.split(":")[0]), int(setting.split(":")[1])
            walls, got = [], []
            for i in range(args.repeats):
                out = Path(tmp) / f"{setting}-{i}.json"
                walls.append(run(args, seconds, rounds, out))
                got.append(json.loads(out.read_text()))
            ranges = "  ".join(
                f"{k} {min(g[k + '_speedup'] for g in got):.2f}-"
                f"{max(g[k + '_speedup'] for g in got):.2f}"
                for k in SPEEDUPS
            )
            job = sum(walls) / len(walls)
            print(f"seconds {seconds:<5g} rounds {rounds}  job {job:4.1f} s  {ranges}")


if __name__ == "__main__":
    main()
