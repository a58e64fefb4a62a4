"""CPU latency of ResNet-20 and its 65%-pruned students: PyTorch eager against onnxruntime, at
batch 1 and 64, and where the time goes (onnxruntime's per-node profile, summed by op type).
The students: pointwise, lowrank, and channels (whole channels removed, kept widths multiples
of 8, the AVX2 block).

    python benchmarks/onnx_latency.py [--threads 2] [--seconds 2]

Weights are random (latency does not depend on their values); BatchNorm statistics are set by
one training-mode pass. Run it with nothing else running: the figures are medians over runs.
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path

import torch

from alphaprune import blend, channels
from alphaprune.branches.base import count_params
from alphaprune.budget.allocator import allocate
from alphaprune.costs import model_macs
from alphaprune.models import build_model
from alphaprune.pipeline.deploy import export, latency
from alphaprune.student import make_student

SHAPE = (3, 32, 32)


def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    teacher = build_model("resnet20", 10)
    teacher.train()(torch.randn(64, *SHAPE))
    teacher.eval()
    out = {"teacher": teacher}
    example = torch.randn(2, *SHAPE)
    for kind, round_to in (("pointwise", 1), ("lowrank", 1), ("channels", 8)):
        plan = allocate(teacher, kind, 0.65, example, round_to=round_to)
        student = make_student(teacher, plan, "pretrained" if kind == "channels" else "random")
        blend.set_alpha(student, 0.0)
        blend.collapse(student)
        if kind == "channels":  # physically narrower at α = 0
            channels.narrow_student(student, plan.removed, example[:1])
        out[kind] = student.eval()
    return out


def profile(path: Path, batch: int, threads: int, runs: int = 50) -> dict[str, float]:
    """Mean microseconds per run of each op type, from onnxruntime's profiler."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((batch, *SHAPE), dtype=np.float32)
    for _ in range(runs):
        sess.run(None, {"input": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    by_op: dict[str, float] = collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"] / runs
    return dict(sorted(by_op.items(), key=lambda kv: -kv[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    nets = models()
    base_params, base_macs = count_params(nets["teacher"]), model_macs(nets["teacher"], SHAPE)
    print(f"threads {args.threads}, torch {torch.__version__}, median of >= {args.seconds} s")
    print("| model | params | MACs | batch | eager ms | onnxruntime ms | eager/ort |")
    print("|---|---|---|---|---|---|---|")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, model in nets.items():
            path = Path(tmp) / f"{name}.onnx"
            export.export_onnx(model, SHAPE, path)
            ratio_p = count_params(model) / base_params
            ratio_m = model_macs(model, SHAPE) / base_macs
            for batch in (1, 64):
                eager = latency.eager_latency_ms(model, SHAPE, batch, args.threads, args.seconds)
                ort = latency.ort_latency_ms(path, SHAPE, batch, args.threads, args.seconds)
                rows[name, batch] = (eager, ort)
                print(
                    f"| {name} | {ratio_p:.2f}× | {ratio_m:.2f}× | {batch} | {eager:.3f} | "
                    f"{ort:.3f} | {eager / ort:.2f} |"
                )
        print("\nspeedup (teacher time / student time):")
        for name in ("pointwise", "lowrank", "channels"):
            for batch in (1, 64):
                e, o = rows[name, batch]
                te, to = rows["teacher", batch]
                print(f"  {name} batch {batch}: eager {te / e:.2f}, onnxruntime {to / o:.2f}")
        print("\nonnxruntime time per op type, batch 64 (µs per run):")
        for name in nets:
            path = Path(tmp) / f"{name}.onnx"
            ops = profile(path, 64, args.threads)
            total = sum(ops.values())
            shown = ", ".join(
                f"{op} {us:.0f} ({us / total:.0%})" for op, us in list(ops.items())[:5]
            )
            print(f"  {name}: total {total:.0f}; {shown}")


if __name__ == "__main__":
    main()
