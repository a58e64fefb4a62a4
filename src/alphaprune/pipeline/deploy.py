"""Deployable students: ONNX files checked against PyTorch, and their latency.

`export_onnx` writes a model (teacher or student) with torch's TorchScript-based ONNX exporter
in eval mode, which folds every BatchNorm into the convolution before it where that is exact
(the convolution's only consumer is the BatchNorm and its weight is a constant), and a
dynamic batch dimension. Sparse branches are exported dense (`Branch.deployable`): ONNX
runtimes run a masked convolution densely, so a sparse student is no faster there.
`check_onnx` compares onnxruntime's logits with PyTorch's on a data split; `ort_latency_ms`
and `eager_latency_ms` time one forward pass at a batch size and thread count.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alphaprune.batches import DeviceData, predict
from alphaprune.branches import Branch
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
    was written: opset, input shape, the graph's node count and its BatchNorm nodes left."""
    import onnx

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
    }


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
    sess = session(path)
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


def ort_latency_ms(
    path: str | Path, shape: tuple[int, ...], batch: int, threads: int, seconds: float = 1.0
) -> float:
    """Median milliseconds of one onnxruntime forward pass of `batch` inputs on `threads`
    threads, over runs totalling at least `seconds` (torch.utils.benchmark's autorange)."""
    sess = session(path, threads)
    feed = {"input": np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)}
    return _median_ms(lambda: sess.run(None, feed), seconds, threads)


def eager_latency_ms(
    model: nn.Module, shape: tuple[int, ...], batch: int, threads: int, seconds: float = 1.0
) -> float:
    """The same for PyTorch eager on the CPU (the deployed form, no autograd)."""
    model, x = deployable(model), torch.randn(batch, *shape)
    with torch.inference_mode():
        return _median_ms(lambda: model(x), seconds, threads)


def _median_ms(run, seconds: float, threads: int) -> float:
    from torch.utils.benchmark import Timer  # imported here: it pulls in cpp_extension, slowly

    timer = Timer("run()", globals={"run": run}, num_threads=threads)
    return timer.blocked_autorange(min_run_time=seconds).median * 1e3
