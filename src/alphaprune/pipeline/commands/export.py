"""`alphaprune export`: a model file (student or teacher) to ONNX, checked in onnxruntime."""

from __future__ import annotations

import logging
from pathlib import Path

from alphaprune.files import write_json
from alphaprune.modelfile import load_model
from alphaprune.pipeline import data, deploy
from alphaprune.pipeline.engine import splits
from alphaprune.runtime import Runtime

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    p.add_argument("--model", type=Path, required=True, help="student.pt or model.pt")
    p.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    p.add_argument(
        "--data",
        type=Path,
        help="prepared data: compare onnxruntime's logits with PyTorch's on its test split",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write what was exported and checked")


def run(args) -> None:
    import torch

    model, recipe = load_model(args.model)
    shape = tuple(recipe["model"]["shape"])
    record = deploy.export_onnx(model, shape, args.out)
    if args.data:  # on the CPU, where the ONNX file runs
        runtime = Runtime(torch.device("cpu"))
        (test,) = splits(data.load(args.data), runtime, "test")
        record |= deploy.check_onnx(args.out, model, test, runtime)
    if args.json:
        write_json(args.json, record)
    log.info(
        "%s -> %s: %d nodes, %d BatchNorm left%s",
        args.model,
        args.out,
        record["onnx_nodes"],
        record["onnx_batchnorm_nodes"],
        ""
        if "onnx_top1_agreement" not in record
        else f"; onnxruntime top-1 agreement {record['onnx_top1_agreement']:.4f}, "
        f"max |Δlogit| {record['onnx_max_abs_logit_diff']:.2e}",
    )
