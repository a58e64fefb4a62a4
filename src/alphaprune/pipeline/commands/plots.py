"""`alphaprune plots`: draw the figures of every variant."""

from __future__ import annotations

import logging
from pathlib import Path

from alphaprune.pipeline.commands._shared import (
    add_params_arguments,
    add_record_argument,
    load,
    write_record,
)
from alphaprune.pipeline.params import twins
from alphaprune.pipeline.report import plots
from alphaprune.pipeline.report.results import read_curves, read_metrics, read_teachers

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    add_params_arguments(p)
    add_record_argument(p)
    p.add_argument("--teacher", type=Path, required=True, help="folder of the teachers' folders")
    p.add_argument("--variants", type=Path, required=True, help="folder of variant folders")
    p.add_argument(
        "--latency", type=Path, help="folder of the latency stage's timings (alphaprune latency)"
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the PNG files")


def run(args) -> None:
    params = load(args)
    names, runs = list(params.variants), params.replicates.names()
    histories, steps = read_curves(names, runs, args.variants)
    per_run = read_metrics(names, runs, args.variants, latency_dir=args.latency)
    teacher = read_teachers(params.replicates.teacher_names(), args.teacher).mean().to_dict()
    paths = plots.all_figures(
        histories,
        steps,
        per_run,
        teacher,
        args.out,
        params.eval.confidence,
        twins.pairs(params),
    )
    log.info("wrote %d figures to %s", len(paths), args.out)
    write_record(args, "plots")
