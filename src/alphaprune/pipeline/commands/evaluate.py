"""`alphaprune evaluate`: measure a student against its teacher (metrics.json)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from alphaprune.files import read_csv, write_csv, write_json
from alphaprune.loading import load_model
from alphaprune.pipeline.commands._shared import (
    add_params_arguments,
    add_record_argument,
    add_seed_argument,
    load,
    write_record,
)
from alphaprune.pipeline.data.prepared import load_data
from alphaprune.pipeline.stages.engine import runtime_from, splits
from alphaprune.pipeline.stages.evaluate import evaluate

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    add_params_arguments(p)
    add_record_argument(p)
    add_seed_argument(p, "the noise of the noisy-test accuracy")
    p.add_argument("--variant", required=True, help="the variant the student belongs to")
    for name in ("data", "teacher", "teacher-metrics", "student", "history", "steps", "out"):
        p.add_argument(f"--{name}", type=Path, required=True)
    p.add_argument(
        "--predictions",
        type=Path,
        metavar="FILE",
        help="also write the student's prediction for every test image (CSV: label, pred), "
        "which the report's paired tests between variants read",
    )


def run(args) -> None:
    params = load(args)
    params.variant(args.variant)  # an unknown name ends here, with one line
    prepared = load_data(args.data)
    runtime = runtime_from(params.runtime)
    teacher, t_recipe = load_model(args.teacher, runtime.device)
    student, s_recipe = load_model(args.student, runtime.device)
    teacher, student = runtime.place(teacher), runtime.place(student)
    (test,) = splits(prepared, runtime, "test")
    metrics, predicted = evaluate(
        student,
        teacher,
        test,
        teacher_metrics=json.loads(Path(args.teacher_metrics).read_text()),
        history=read_csv(args.history),
        steps=read_csv(args.steps),
        shape=prepared.shape,
        cfg=params.eval,
        runtime=runtime,
        seed=args.seed,
        recipes=(s_recipe, t_recipe),
    )
    write_json(args.out, metrics)
    if args.predictions:
        pairs = zip(test.y.tolist(), predicted.tolist(), strict=True)
        write_csv(args.predictions, [{"label": y, "pred": p} for y, p in pairs])
    log.info(
        "%s: test_acc=%.4f, removed %.4f of the parameters and %.4f of the MACs",
        args.variant,
        metrics["test_acc"],
        metrics["achieved"],
        metrics["macs_achieved"],
    )
    write_record(args, "evaluate", args.variant)
