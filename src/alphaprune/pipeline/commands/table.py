"""`alphaprune table`: a teacher's latency table for `--target latency` (onnxruntime, CPU).

The teacher timed whole and with each channel group narrowed (`alphaprune.pipeline.deploy.table`),
written as JSON (`alphaprune.budget.latency.LatencyTable`); `alphaprune plan --target latency
--table FILE` plans with it. Run it with nothing else running: the timings are the table."""

from __future__ import annotations

from pathlib import Path

from alphaprune.files import write_json
from alphaprune.loading import load_model
from alphaprune.pipeline.deploy.table import measure_table
from alphaprune.pipeline.params.base import ConfigError


def add_arguments(p) -> None:
    p.add_argument("--teacher", type=Path, required=True, help="the teacher's model file")
    p.add_argument("--out", type=Path, required=True, help="the table (JSON)")
    p.add_argument("--batch", type=int, default=64, help="inputs per pass (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1)")
    p.add_argument("--round-to", type=int, default=8, help="the width step (default: 8)")
    p.add_argument("--widths", type=int, default=8, help="timed widths per group, at most")
    p.add_argument("--seconds", type=float, default=0.1, help="timed seconds per model and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds (medians over them)")
    p.add_argument("--exclude", nargs="*", default=None, help="as the prune's prune.exclude")


def run(args) -> None:
    if args.widths < 2:
        raise ConfigError(f"--widths: at least 2 timed widths per group, got {args.widths}")
    model, recipe = load_model(args.teacher)
    table = measure_table(
        model,
        tuple(recipe["model"]["shape"]),
        batch=args.batch,
        threads=args.threads,
        round_to=args.round_to,
        seconds=args.seconds,
        rounds=args.rounds,
        widths=args.widths,
        exclude=args.exclude,
    )
    write_json(args.out, table.to_dict())
    print(
        f"{args.teacher}: {table.full_ms:.3f} ms at batch {table.batch} on {table.threads} "
        f"thread(s), {table.engine}; {len(table.groups)} groups, {len(table.pairs)} pairs, "
        f"{table.conditions['models_timed']} models timed -> {args.out}"
    )
