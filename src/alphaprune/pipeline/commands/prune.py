"""`alphaprune prune`: prune the teacher with one variant's recipe."""

from __future__ import annotations

import logging
from pathlib import Path

from alphaprune.pipeline.commands._shared import (
    add_params_arguments,
    add_record_argument,
    add_seed_argument,
    load,
    write_record,
)
from alphaprune.pipeline.stages.launch import relaunched
from alphaprune.pipeline.stages.progress import Progress
from alphaprune.pipeline.stages.prune import prune

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    add_params_arguments(p)
    add_record_argument(p)
    add_seed_argument(p, "this prune run (branch initialisation, batch order, augmentation)")
    p.add_argument("--variant", required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for student.pt, histories")
    p.add_argument(
        "--table",
        type=Path,
        help="the latency table (`alphaprune table`) a variant of prune.target latency plans from",
    )


def run(args) -> None:
    params = load(args)
    if relaunched(args.argv, params.runtime):
        return  # its processes did the work
    cfg = params.variant(args.variant)
    progress = Progress(args.variant, cfg.epochs)
    out = prune(
        params,
        args.variant,
        args.data,
        args.teacher,
        args.out,
        seed=args.seed,
        on_epoch=progress,
        table_path=args.table,
    )
    progress.close()
    log.info(
        "%s: removed %.4f of the parameters, %.4f of the MACs; val_acc=%.4f",
        args.variant,
        out["achieved"],
        out["macs_achieved"],
        out["val_acc"],
    )
    write_record(args, "prune", args.variant)
