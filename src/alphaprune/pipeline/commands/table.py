"""`alphaprune table`: the latency table that `prune.target: latency` plans from (onnxruntime, CPU).

The model timed whole, and each layer alone at the widths its channel groups can take (or, `per
group`, the model with each group narrowed; `alphaprune.pipeline.deploy.table`), written as JSON
(`alphaprune.budget.latency_table.LatencyTable`). Two ways to ask for one:

- the pipeline's `table` stage: `--params` and `--data` (the prepared data): the params' model
  for that data, measured as `latency.table` says, on `latency.threads` threads; with
  `latency.table` unset it measures nothing and writes a file that says so (no variant may
  then target latency: the params check refuses one);
- by hand: `--teacher FILE` and the flags below; `alphaprune plan --target latency --table FILE`
  plans with it.

Run it with nothing else running: the timings are the table (the pipeline's stage takes every
core)."""

from __future__ import annotations

import json
from pathlib import Path

from alphaprune.files import write_json
from alphaprune.pipeline.commands._shared import (
    add_params_arguments,
    add_record_argument,
    load,
    write_record,
)
from alphaprune.pipeline.params.base import ConfigError

FLAGS = {  # --teacher's settings, and their defaults (the pipeline's are latency.table's)
    "per": "layer",
    "batch": 64,
    "threads": 1,
    "round_to": 8,
    "widths": 8,
    "seconds": 0.1,
    "rounds": 3,
    "whole_seconds": None,  # as --seconds
    "whole_rounds": None,  # as --rounds
}
UNMEASURED = "latency.table is unset: no table was measured (no variant may target latency)"


def add_arguments(p) -> None:
    add_params_arguments(p)
    add_record_argument(p)
    p.add_argument("--data", type=Path, help="the prepared data (the pipeline's stage)")
    p.add_argument("--teacher", type=Path, help="a model file to measure instead of the params'")
    p.add_argument("--out", type=Path, required=True, help="the table (JSON)")
    p.add_argument(
        "--per",
        choices=("layer", "group"),
        help="time each layer alone or the network whole with each group narrowed (default: layer)",
    )
    p.add_argument("--batch", type=int, help="inputs per pass (default: 64)")
    p.add_argument("--threads", type=int, help="intra-op threads (default: 1)")
    p.add_argument("--round-to", type=int, help="the width step (default: 8)")
    p.add_argument(
        "--widths", type=int, help="timed widths per group (per layer: each way), at most (8)"
    )
    p.add_argument("--seconds", type=float, help="timed seconds per model and round (0.1)")
    p.add_argument("--rounds", type=int, help="rounds (medians over them; default: 3)")
    p.add_argument(
        "--whole-seconds",
        type=float,
        help="per layer: timed seconds per round of the models timed whole (the teacher, the "
        "calibration and the check; default: as --seconds)",
    )
    p.add_argument(
        "--whole-rounds",
        type=int,
        help="per layer: rounds of the models timed whole (default: as --rounds)",
    )
    p.add_argument("--exclude", nargs="*", default=None, help="as the prune's prune.exclude")


def run(args) -> None:
    given = [f for f in FLAGS if getattr(args, f) is not None] + (["exclude"] * bool(args.exclude))
    if (args.teacher is None) == (args.data is None):
        raise ConfigError("give --teacher FILE (a table by hand) or --data (the pipeline's stage)")
    if args.teacher is not None:
        _by_hand(args)
    elif given:
        raise ConfigError(
            f"--{given[0].replace('_', '-')}: the pipeline's table takes its settings from "
            f"params (latency.table.{given[0]}), not flags"
        )
    else:
        _from_params(args)


def _by_hand(args) -> None:
    from alphaprune.loading import load_model

    settings = {f: d if getattr(args, f) is None else getattr(args, f) for f, d in FLAGS.items()}
    if settings["widths"] < 2:
        raise ConfigError(f"--widths: at least 2 timed widths per group, got {settings['widths']}")
    for flag in (
        "batch",
        "threads",
        "round_to",
        "seconds",
        "rounds",
        "whole_seconds",
        "whole_rounds",
    ):
        if settings[flag] is not None and not settings[flag] > 0:
            raise ConfigError(f"--{flag.replace('_', '-')}: above 0, got {settings[flag]}")
    model, recipe = load_model(args.teacher)
    _measure(model, tuple(recipe["model"]["shape"]), settings, args.exclude, args.out)


def _from_params(args) -> None:
    params = load(args)
    cfg = params.latency.table
    if cfg is None:
        write_json(args.out, {"measured": False, "why": UNMEASURED})
    else:
        import torch

        from alphaprune.models import build_model

        card = json.loads(args.data.with_suffix(".json").read_text())
        c, h, _ = card["shape"]
        torch.manual_seed(0)  # the weights change no timing: any init will do
        model = build_model(params.model.name, len(card["classes"]), in_channels=c, image_size=h)
        settings = cfg.model_dump(exclude={"exclude", "batch"})
        settings |= {"batch": params.latency.table_batch(), "threads": params.latency.threads}
        _measure(model, tuple(card["shape"]), settings, cfg.exclude, args.out)
    write_record(args, "table")


def _measure(model, shape: tuple[int, ...], settings: dict, exclude, out: Path) -> None:
    from alphaprune.pipeline.deploy.table import measure_table

    table = measure_table(model, shape, **settings, exclude=exclude)
    write_json(out, table.to_dict())
    print(
        f"{table.full_ms:.3f} ms at batch {table.batch} on {table.threads} thread(s), "
        f"{table.engine}; per {table.per}: {len(table.widths)} groups, "
        + (f"{len(table.layers)} layers, " if table.layers else f"{len(table.pairs)} pairs, ")
        + f"{table.conditions['models_timed']} models timed -> {out}"
    )
    if table.calibration:
        print(f"calibration: {100 * table.fixed:.1f}% of the time does not shrink with the layers")
    if table.check is not None:
        print(f"check: {table.check_note()}")
