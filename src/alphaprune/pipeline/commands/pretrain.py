"""`alphaprune pretrain`: train the teacher."""

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
from alphaprune.pipeline.stages.pretrain import pretrain
from alphaprune.pipeline.stages.progress import Progress

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    add_params_arguments(p)
    add_record_argument(p)
    add_seed_argument(p, "this teacher (initialisation, batch order, augmentation)")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder for model.pt, metrics, history")


def run(args) -> None:
    params = load(args)
    if relaunched(args.argv, params.runtime):
        return  # its processes did the work
    progress = Progress("teacher", params.teacher.epochs)
    metrics = pretrain(params, args.data, args.out, seed=args.seed, on_epoch=progress)
    progress.close()
    log.info("teacher: test_acc=%.4f params=%d", metrics["test_acc"], metrics["params"])
    write_record(args, "pretrain")
