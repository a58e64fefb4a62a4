"""`alphaprune export`: a model file (student or teacher) to ONNX, checked in onnxruntime, and
optionally to a `torch.export` program."""

from __future__ import annotations

import logging
from pathlib import Path

from alphaprune.errors import UserError
from alphaprune.files import write_json
from alphaprune.loading import load_model
from alphaprune.pipeline.data.prepared import load_data
from alphaprune.pipeline.deploy import export
from alphaprune.pipeline.stages.engine import splits
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
    p.add_argument(
        "--min-agreement",
        type=float,
        default=0.999,
        metavar="F",
        help="with --data: fail (exit 2, nothing left written) when onnxruntime's top-1 prediction "
        "agrees with PyTorch's on less than this fraction of the test images (default 0.999)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write what was exported and checked")
    p.add_argument(
        "--pt2",
        type=Path,
        metavar="FILE",
        help="also write the model as a torch.export program (.pt2), which PyTorch loads "
        "without this package: torch.export.load(FILE).module()",
    )


def run(args) -> None:
    import torch

    model, recipe = load_model(args.model)
    shape = tuple(recipe["model"]["shape"])
    record = export.export_onnx(model, shape, args.out)
    if args.data:  # on the CPU, where the ONNX file runs
        runtime = Runtime(torch.device("cpu"))
        (test,) = splits(load_data(args.data), runtime, "test")
        record |= export.check_onnx(args.out, model, test, runtime)
        if record["onnx_top1_agreement"] < args.min_agreement:
            args.out.unlink()  # a file that does not compute the model is not an output
            raise UserError(
                f"{args.out}: onnxruntime's top-1 predictions agree with PyTorch's on "
                f"{record['onnx_top1_agreement']:.4%} of the {len(test)} test images, below "
                f"--min-agreement {args.min_agreement} (largest logit difference "
                f"{record['onnx_max_abs_logit_diff']:.3g}): the exported graph does not compute "
                "the model; please report it with the model file"
            )
    if args.pt2:
        export.export_program(model, shape, args.pt2)
    if args.json:
        write_json(args.json, record)
    log.info(
        "%s -> %s: %d nodes, %d BatchNorm left%s%s",
        args.model,
        args.out,
        record["onnx_nodes"],
        record["onnx_batchnorm_nodes"],
        "; sparse layers stored dense" if record["onnx_sparse_as_dense"] else "",
        ""
        if "onnx_top1_agreement" not in record
        else f"; onnxruntime top-1 agreement {record['onnx_top1_agreement']:.4f}, "
        f"max |Δlogit| {record['onnx_max_abs_logit_diff']:.2e}",
    )
