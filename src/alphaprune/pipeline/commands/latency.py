"""`alphaprune latency`: time a student and its teacher where they run (latency.json).

Run it with nothing else running: the pipeline gives the job every core (Snakemake) or runs it
alone (DVC runs one stage at a time), and latency.json records how busy other processes kept
the CPUs while it timed."""

from __future__ import annotations

import logging
from pathlib import Path

from alphaprune.devices import resolve_device
from alphaprune.files import write_json
from alphaprune.loading import load_model
from alphaprune.pipeline import latency
from alphaprune.pipeline.commands import (
    add_params_arguments,
    add_record_argument,
    load,
    write_record,
)

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    add_params_arguments(p)
    add_record_argument(p)
    p.add_argument("--teacher", type=Path, required=True, help="the teacher's model.pt")
    p.add_argument("--student", type=Path, required=True, help="the student's student.pt")
    p.add_argument("--onnx", type=Path, required=True, help="the student's student.onnx")
    p.add_argument(
        "--teacher-onnx",
        type=Path,
        help="the teacher as ONNX (alphaprune export); without it, it is exported here",
    )
    p.add_argument("--out", type=Path, required=True, help="latency.json to write")


def run(args) -> None:
    params = load(args)
    # CUDA timings when training would use it
    device = resolve_device(params.runtime.device, params.runtime.jobs_per_gpu)
    teacher, _ = load_model(args.teacher)
    student, recipe = load_model(args.student)
    shape = tuple(recipe["model"]["shape"])
    got = latency.measure(
        teacher, student, args.onnx, shape, params.latency, device, teacher_onnx=args.teacher_onnx
    )
    write_json(args.out, got)
    other = got["other_cpu_use_cores"]
    log.info(
        "%s: onnxruntime speedup %.2fx at batch %d, %.2fx at batch %d (%d thread%s)%s",
        args.student,
        got["ort_latency_speedup"],
        got["latency_batch"],
        got["ort_throughput_speedup"],
        got["throughput_batch"],
        got["latency_threads"],
        "" if got["latency_threads"] == 1 else "s",
        "" if other is None else f"; other processes used {other:.2f} cores meanwhile",
    )
    write_record(args, "latency")
