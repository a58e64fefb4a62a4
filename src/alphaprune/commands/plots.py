"""`alphaprune plots`: draw the figures of every variant."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from alphaprune import plots
from alphaprune.commands import add_params_arguments, add_record_argument, load, write_record
from alphaprune.results import read_curves, read_metrics

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    add_params_arguments(p)
    add_record_argument(p)
    p.add_argument("--teacher", type=Path, required=True, help="the teacher's results folder")
    p.add_argument("--variants", type=Path, required=True, help="folder of variant folders")
    p.add_argument("--out", type=Path, required=True, help="folder for the PNG files")


def run(args) -> None:
    names = list(load(args).variants)
    histories, steps = read_curves(names, args.variants)
    metrics = read_metrics(names, args.variants)
    teacher = json.loads((args.teacher / "metrics.json").read_text())
    paths = plots.all_figures(histories, steps, metrics, teacher, args.out)
    log.info("wrote %d figures to %s", len(paths), args.out)
    write_record(args, "plots")
