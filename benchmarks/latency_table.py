"""Does the latency table predict? (issue 37's goal: a student's predicted time within ±10% of
its measured time, over at least 5 random allocations per model.)

For each model: measure its table in onnxruntime (one thread, `--batch`; `--per layer`, the
default, or `--per group`: see alphaprune.pipeline.deploy.table), draw `--students`
random allocations (every group at a random multiple of `--round-to`, at least one block), and
time those students in turns with the teacher (`measured_fractions`); print each student's
predicted and measured time as a fraction of the teacher's, the error, and what the table cost.
Weights do not change how long a dense layer takes: the models are untrained.

`--builds N` measures each table N times over, one after another, and scores every build on the
same students (timed once, after the builds, at `--student-seconds` x `--student-rounds`): how
much a table's fitted share of fixed time (`LatencyTable.fixed`) and its errors move from one
build to the next on this machine. `--whole-seconds` / `--whole-rounds`: how long the table
times its whole models (the teacher, the calibration, the check; by default as the layers).

    python benchmarks/latency_table.py --models resnet20 vgg11 tv:resnet18 --batch 64
    python benchmarks/latency_table.py --models resnet20 vgg11 tv:resnet18 --batch 64 --per group
    python benchmarks/latency_table.py --models resnet20 --builds 3 --student-seconds 1 \
        --student-rounds 7 --whole-seconds 1 --whole-rounds 7
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from alphaprune.models import build_model
from alphaprune.pipeline.deploy.table import PER, measure_table
from alphaprune.pipeline.deploy.turns import measured_fractions


def allocations(widths: dict[str, int], round_to: int, n: int) -> list[dict[str, int]]:
    """`n` random students (seeded): each group at a random multiple of `round_to`, the groups
    left at their full width not named."""
    rng, drawn = random.Random(0), []
    for _ in range(n):
        kept = {}
        for root, width in widths.items():
            w = rng.randrange(round_to, width + 1, round_to) if width > 1 else width
            if w < width:
                kept[root] = w
        drawn.append(kept)
    return drawn


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet20", "vgg11", "tv:resnet18"])
    p.add_argument("--per", choices=PER, default=PER[0], help="how the table is measured")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--widths", type=int, default=8)
    p.add_argument("--students", type=int, default=5)
    p.add_argument("--seconds", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=32, help="input height and width")
    p.add_argument("--whole-seconds", type=float, help="(default: --seconds)")
    p.add_argument("--whole-rounds", type=int, help="(default: --rounds)")
    p.add_argument("--builds", type=int, default=1, help="tables measured per model")
    p.add_argument("--student-seconds", type=float, help="(default: --seconds)")
    p.add_argument("--student-rounds", type=int, help="(default: --rounds)")
    args = p.parse_args()
    if args.builds < 1:
        p.error(f"--builds: at least 1, got {args.builds}")
    shape = (3, args.size, args.size)
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name, 10, in_channels=3, image_size=args.size).eval()
        tables = []
        for build in range(args.builds):
            t0 = time.perf_counter()
            table = measure_table(
                model,
                shape,
                per=args.per,
                batch=args.batch,
                round_to=args.round_to,
                seconds=args.seconds,
                rounds=args.rounds,
                widths=args.widths,
                whole_seconds=args.whole_seconds,
                whole_rounds=args.whole_rounds,
            )
            tables.append(table)
            print(
                f"{name} build {build + 1}: teacher {table.full_ms:.3f} ms at batch {args.batch}"
                f" [{table.full_spread[0]:.3f}, {table.full_spread[1]:.3f}]; table per "
                f"{args.per}: {len(table.widths)} groups, {len(table.pairs)} pairs, "
                f"{len(table.layers)} layers, {table.conditions['models_timed']} models timed "
                f"in {time.perf_counter() - t0:.0f} s; fixed share {100 * table.fixed:.1f}%; "
                f"other processes kept {table.conditions['other_cpu_use_cores']:.2f} cores busy;"
                f" check: {table.check_note()}",
                flush=True,
            )
        drawn = allocations(table.widths, args.round_to, args.students)
        measured = measured_fractions(
            model,
            shape,
            drawn,
            batch=args.batch,
            seconds=args.student_seconds or args.seconds,
            rounds=args.student_rounds or args.rounds,
        )
        for build, table in enumerate(tables, 1):
            errors = []
            for kept, got in zip(drawn, measured, strict=True):
                predicted = table.predict(kept) / table.full_ms
                errors.append(predicted / got - 1)
                print(
                    f"  build {build}, student: predicted {predicted:.3f} of the teacher's "
                    f"time, measured {got:.3f} ({errors[-1]:+.1%}); {len(kept)} groups narrowed"
                )
            print(
                f"  build {build}: largest |error| {max(map(abs, errors)):.1%}, mean error "
                f"{sum(errors) / len(errors):+.1%}"
            )


if __name__ == "__main__":
    main()
