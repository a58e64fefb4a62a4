"""`alphaprune report`: write the Markdown report."""

from __future__ import annotations

import logging
from pathlib import Path

from alphaprune.files import atomic_path, write_json
from alphaprune.pipeline.commands._shared import (
    add_params_arguments,
    add_record_argument,
    load,
    write_record,
)
from alphaprune.pipeline.params import twins
from alphaprune.pipeline.report import markdown, stats, tables
from alphaprune.pipeline.report.results import (
    read_correct,
    read_metrics,
    read_teachers,
    variant_means,
)

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    add_params_arguments(p)
    add_record_argument(p)
    p.add_argument("--teacher", type=Path, required=True, help="folder of the teachers' folders")
    p.add_argument("--variants", type=Path, required=True, help="folder of variant folders")
    p.add_argument(
        "--latency", type=Path, help="folder of the latency stage's timings (alphaprune latency)"
    )
    p.add_argument("--plots", type=Path, required=True, help="folder of the figures")
    p.add_argument("--out", type=Path, required=True, help="the report's .md file")
    p.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="also write each variant's test accuracy (and the teacher's) to this JSON file, one "
        "key each: a metrics file `dvc exp show` can show in a terminal's width",
    )


def run(args) -> None:
    params = load(args)
    names, runs = list(params.variants), params.replicates.names()
    per_run = read_metrics(names, runs, args.variants, latency_dir=args.latency)
    correct = read_correct(names, runs, args.variants)
    table = stats.summarise(per_run, correct, params.reference, params.eval.confidence)
    pairs = twins.pairs(params)
    found = {a: t for a, t in pairs.items() if t is not None}
    twin_table = stats.compare_pairs(per_run, correct, found, params.eval.confidence)
    untwinned = [a for a, t in pairs.items() if t is None]
    means = variant_means(per_run)
    teachers = read_teachers(params.replicates.teacher_names(), args.teacher)
    summary = sorted(p for p in args.plots.glob("*.png") if not p.name.startswith("training_"))
    per_variant = [args.plots / f"training_{n}.png" for n in names]
    figures = summary + per_variant
    text = markdown.render(
        means, table, teachers, params, figures, args.out.parent, per_run, twin_table, untwinned
    )
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    if args.summary:
        write_json(args.summary, tables.summary(means, teachers))
    log.info("wrote %s", args.out)
    write_record(args, "report")
