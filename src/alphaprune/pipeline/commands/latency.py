"""`alphaprune latency`: time every student of the grid and its teacher where they run, each
distinct architecture once (`<out>/<variant>/<replicate>/latency.json`).

Run it with nothing else running: the pipeline gives the job every core (Snakemake) or runs it
alone (DVC runs one stage at a time), and each latency.json records how busy other processes
kept the CPUs while it timed."""

from __future__ import annotations

import logging
from pathlib import Path

from alphaprune.devices import resolve_device
from alphaprune.files import write_json
from alphaprune.loading import load_model
from alphaprune.pipeline.commands._shared import (
    add_params_arguments,
    add_record_argument,
    load,
    write_record,
)
from alphaprune.pipeline.deploy import latency
from alphaprune.pipeline.deploy.targets import latency_target
from alphaprune.pipeline.params.schema import run_name

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    add_params_arguments(p)
    add_record_argument(p)
    p.add_argument(
        "--teacher",
        type=Path,
        required=True,
        help="folder of the teachers' folders (t<seed>/model.pt, and model.onnx if exported)",
    )
    p.add_argument(
        "--variants",
        type=Path,
        required=True,
        help="folder of variant folders (<variant>/<replicate>/student.pt and student.onnx)",
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the latency.json files")


def run(args) -> None:
    params = load(args)
    # CUDA timings when training would use it
    device = resolve_device(params.runtime.device, params.runtime.jobs_per_gpu)
    models, onnx, teacher_of, shapes, recipes = {}, {}, {}, set(), {}
    for t in params.replicates.teachers:
        folder = args.teacher / f"t{t}"
        models[f"t{t}"], recipe = load_model(folder / "model.pt")
        shapes.add(tuple(recipe["model"]["shape"]))
        if (folder / "model.onnx").exists():
            onnx[f"t{t}"] = folder / "model.onnx"
    for v in params.variants:
        for t, s in params.replicates.runs():
            name, folder = f"{v}/{run_name(t, s)}", args.variants / v / run_name(t, s)
            models[name], recipe = load_model(folder / "student.pt")
            recipes[name] = recipe
            onnx[name], teacher_of[name] = folder / "student.onnx", f"t{t}"
    (shape,) = shapes  # one prepared dataset: one input shape
    timed = latency.measure_grid(models, teacher_of, shape, params.latency, device, onnx)
    for name, got in timed.items():
        got |= latency_target(recipes[name], got)  # what a latency target asked
        write_json(args.out / name / "latency.json", got)
        log.info(
            "%s: onnxruntime speedup %.2fx at batch %d, %.2fx at batch %d",
            name,
            got["ort_latency_speedup"],
            got["latency_batch"],
            got["ort_throughput_speedup"],
            got["throughput_batch"],
        )
    some = next(iter(timed.values()))
    other = some["other_cpu_use_cores"]
    log.info(
        "%d students and %d teacher%s timed as %d architectures (%d thread%s)%s",
        len(teacher_of),
        len(params.replicates.teachers),
        "" if len(params.replicates.teachers) == 1 else "s",
        some["architectures_timed"],
        some["latency_threads"],
        "" if some["latency_threads"] == 1 else "s",
        "" if other is None else f"; other processes used {other:.2f} cores meanwhile",
    )
    write_record(args, "latency")
