"""Do `target: latency` students land at the speed they ask for? (issue 37's goal: every one
within ±5% of its asked speedup.)

For each model: measure its latency table (`measure_table`, onnxruntime, one thread, `--batch`,
`--per` layer or group), plan a `channels` student for each speedup in `--speedups` (`amount` =
1 − 1/speedup) by the knapsack and by Torch-Pruning's global ranking cut until the table
predicts the same saving (`--rankings`), narrow the model to each plan, and time the students in
turns with the teacher (`measured_fractions`); print the speedup asked, predicted and measured.
Untrained models plan on their init's importance (`--teacher FILE` plans on trained weights):
weights do not change how long a dense layer takes, but they change which widths a plan keeps.

    python benchmarks/latency_targets.py --models resnet20 vgg11 --exclude linear classifier.*
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import torch

from alphaprune.budget.allocator import allocate
from alphaprune.budget.plan import BudgetError
from alphaprune.loading import load_model
from alphaprune.models import build_model
from alphaprune.pipeline.deploy.table import PER, measure_table
from alphaprune.pipeline.deploy.turns import measured_fractions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet20", "vgg11"])
    p.add_argument("--teacher", help="a model file to plan on instead of --models' inits")
    p.add_argument("--per", choices=PER, default=PER[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--speedups", nargs="+", type=float, default=[1.5, 2.0, 3.0])
    p.add_argument("--rankings", nargs="+", default=["knapsack", "global"])
    p.add_argument("--exclude", nargs="*", default=None, help="globs, as prune.exclude")
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--seconds", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--student-seconds",
        type=float,
        help="the students' timing, if not the table's (the pipeline's latency stage times "
        "longer than its table stage: latency.seconds against latency.table.seconds)",
    )
    p.add_argument("--student-rounds", type=int)
    p.add_argument(
        "--plain",
        action="store_true",
        help="also plan each student on the table without its calibration (nothing of the "
        "time taken not to shrink), timed in the same turns",
    )
    p.add_argument("--save-table", help="write the table measured (JSON) here")
    p.add_argument("--size", type=int, default=32, help="input height and width")
    args = p.parse_args()
    timing = dict(batch=args.batch, seconds=args.seconds, rounds=args.rounds)
    models = [args.teacher] if args.teacher else args.models
    for name in models:
        torch.manual_seed(0)
        if args.teacher:
            model, recipe = load_model(name)
            shape = tuple(recipe["model"]["shape"])
        else:
            shape = (3, args.size, args.size)
            model = build_model(name, 10, in_channels=3, image_size=args.size)
        model.eval()
        # the patterns that name a layer of this model (VGG's classifier is not ResNet's)
        names = [n for n, _ in model.named_modules()]
        exclude = args.exclude
        if exclude is not None:
            from fnmatch import fnmatchcase

            exclude = [e for e in exclude if any(fnmatchcase(n, e) for n in names)]
        t0 = time.perf_counter()
        table = measure_table(
            model, shape, per=args.per, round_to=args.round_to, exclude=exclude, **timing
        )
        cost = time.perf_counter() - t0
        if args.save_table:
            Path(args.save_table).write_text(json.dumps(table.to_dict(), indent=1))
        tables = {"calibrated": table}
        if args.plain:
            tables["plain"] = dataclasses.replace(table, calibration=())
        example = torch.zeros(2, *shape)
        plans = []
        for speedup, ranking, (how, planned_on) in itertools.product(
            args.speedups, args.rankings, tables.items()
        ):
            try:
                plan = allocate(
                    model,
                    "channels",
                    1 - 1 / speedup,
                    example,
                    exclude,
                    args.round_to,
                    "latency",
                    table=planned_on,
                    ranking=ranking,
                )
            except BudgetError as e:
                print(f"{name} {speedup}x {ranking} ({how}): {e}")
                continue
            kept = {r: table.widths[r] - len(idx) for r, idx in plan.removed.items()}
            plans.append((speedup, f"{ranking} ({how})", plan, kept))
        students = {
            **timing,
            "seconds": args.student_seconds or args.seconds,
            "rounds": args.student_rounds or args.rounds,
        }
        measured = measured_fractions(model, shape, [k for *_, k in plans], **students)
        print(
            f"{name}: teacher {table.full_ms:.3f} ms at batch {args.batch}; table per {args.per} "
            f"in {cost:.0f} s; {100 * table.fixed:.1f}% of the time taken not to shrink "
            f"(calibration); check: {table.check_note()}"
        )
        for (speedup, ranking, plan, _), got in zip(plans, measured, strict=True):
            predicted = plan.latency["teacher_ms"] / plan.latency["student_ms"]
            print(
                f"  {speedup:.2f}x {ranking:28s}: predicted {predicted:.2f}x, measured "
                f"{1 / got:.2f}x ({1 / (speedup * got) - 1:+.1%} of the speed asked); parameters "
                f"removed {plan.achieved:.1%}, MACs {plan.macs_achieved:.1%}"
            )


if __name__ == "__main__":
    main()
