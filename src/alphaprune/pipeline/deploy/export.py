"""Deployable students: ONNX files checked against PyTorch (their latency: `latency`).

`export_onnx` writes a model (teacher or student) with torch's TorchScript-based ONNX exporter
in eval mode, which folds every BatchNorm into the convolution before it where that is exact
(the convolution's only consumer is the BatchNorm and its weight is a constant), and a
dynamic batch dimension. Sparse branches are exported dense (`Branch.deployable`): ONNX
runtimes run a masked convolution densely, so a sparse student is no faster there.
`check_onnx` compares onnxruntime's logits with PyTorch's on a data split. `export_program`
writes the same deployed model as a `torch.export` program, which PyTorch alone loads.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alphaprune.batches import DeviceData, predict
from alphaprune.branches.base import Branch
from alphaprune.files import atomic_path
from alphaprune.runtime import Runtime

OPSET = 18


def deployable(model: nn.Module) -> nn.Module:
    """A CPU copy of `model` in eval mode with every branch in its deployed form."""
    with torch.no_grad():  # a derived tensor left by a training forward pass cannot be copied
        for module in model.modules():
            if isinstance(module, Branch):
                module.loaded()
    model = copy.deepcopy(model).cpu().eval()
    for name, module in list(model.named_modules()):
        if isinstance(module, Branch) and module.deployable() is not module:
            model.set_submodule(name, module.deployable())
    return model


def export_onnx(model: nn.Module, shape: tuple[int, ...], path: str | Path) -> dict:
    """Write `model` for inputs (batch, *shape) as ONNX at `path` (atomically); return what
    was written: opset, input shape, the graph's node count, its BatchNorm nodes left, its
    weights (`onnx_params`, every stored value: a sparse layer's zeros too) and whether some
    layer was sparse and is stored dense (`onnx_sparse_as_dense`)."""
    import onnx
    from onnx import numpy_helper

    # a kind whose deployed form is another module (the sparse one: a dense layer)
    sparse = any(
        isinstance(m, Branch) and type(m).deployable is not Branch.deployable
        for m in model.modules()
    )
    model = deployable(model)
    example = torch.zeros(1, *shape)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on constant folding
        torch.onnx.export(
            model,
            (example,),
            str(tmp),
            dynamo=False,  # TorchScript exporter: folds BatchNorm in eval mode, no onnxscript
            opset_version=OPSET,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            do_constant_folding=True,
        )
    graph = onnx.load(str(path)).graph
    ops = [node.op_type for node in graph.node]
    return {
        "onnx_opset": OPSET,
        "onnx_input_shape": ["batch", *shape],
        "onnx_nodes": len(ops),
        "onnx_batchnorm_nodes": ops.count("BatchNormalization"),
        "onnx_params": sum(numpy_helper.to_array(t).size for t in graph.initializer),
        "onnx_sparse_as_dense": sparse,
    }


def export_program(model: nn.Module, shape: tuple[int, ...], path: str | Path) -> None:
    """Write `model` for inputs (batch, *shape) as a `torch.export` program at `path`
    (atomically), batch dynamic: `torch.export.load(path).module()` runs it with no code of
    this package (BatchNorm is not folded here: PyTorch runs it in eval mode)."""
    model = deployable(model)
    example = torch.zeros(2, *shape)  # batch 1 would be specialised to a constant
    program = torch.export.export(
        model, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    with atomic_path(path) as tmp:
        torch.export.save(program, str(tmp))


def session(path: str | Path, threads: int | None = None):
    """An onnxruntime CPU session for `path`; `threads` intra-op threads (None: its default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_onnx(path: str | Path, model: nn.Module, data: DeviceData, runtime: Runtime) -> dict:
    """onnxruntime's logits for `data` against PyTorch's (`model` on `runtime`): the largest
    absolute logit difference and the top-1 agreement."""
    sess = session(path, threads=1)  # the export job's one thread: prunes may run beside it
    ours = predict(model, data, runtime).cpu().numpy()
    theirs = np.concatenate(
        [
            sess.run(None, {"input": x.cpu().numpy()})[0]
            for x, _, _ in data.batches(runtime.eval_batch_size)
        ]
    )
    return {
        "onnx_max_abs_logit_diff": float(np.abs(ours - theirs).max()),
        "onnx_top1_agreement": float((ours.argmax(1) == theirs.argmax(1)).mean()),
    }
