"""Why the channel students of the digits grid ran slower than their teacher in `make run`'s
figure (0.78-0.9x in onnxruntime): time the digits CNN against its `channels` students at 65%
of the parameters with the widths rounded to 1 (the default until 0.3.0), 4, 8 and 16, in
onnxruntime and PyTorch eager on one thread, long enough to trust (each figure the median of
`--rounds` rounds of `--seconds` each, the architectures taking turns).

    python benchmarks/digits_channels.py [--seconds 0.5] [--rounds 7] [--teacher MODEL.pt]

Prints each student's widths (the convs' output channels), MAC ratio and speedups with their
range over rounds. Weights do not change how fast a layer runs, so the students are the
teacher's plans applied at α = 0, untrained.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from alphaprune import blend, channels
from alphaprune.budget.allocator import allocate
from alphaprune.costs import count_macs
from alphaprune.loading import load_model
from alphaprune.models import build_model
from alphaprune.pipeline.deploy import latency
from alphaprune.pipeline.params.schema import LatencyConfig
from alphaprune.student import make_student

SHAPE = (1, 8, 8)


def student(teacher, round_to: int, example):
    plan = allocate(teacher, "channels", 0.65, example, round_to=round_to)
    model = make_student(teacher, plan, "pretrained")
    blend.set_alpha(model, 0.0)
    model = blend.collapse(model).eval()
    channels.narrow_student(model, plan.removed, example[:1])
    return model.eval()


def widths(model) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--teacher", type=Path, help="a trained digits teacher (default: untrained)")
    args = p.parse_args()
    torch.manual_seed(0)
    if args.teacher:
        teacher = load_model(args.teacher)[0].eval()
    else:
        teacher = build_model("cnn", num_classes=10, in_channels=1, image_size=8).eval()
    example = torch.randn(2, *SHAPE)
    models = {"teacher": teacher}
    for r in (1, 4, 8, 16):
        models[f"round_to {r}"] = student(teacher, r, example)
    teacher_of = {n: "teacher" for n in models if n != "teacher"}
    cfg = LatencyConfig(seconds=args.seconds, rounds=args.rounds)
    got = latency.measure_grid(models, teacher_of, SHAPE, cfg)
    t_macs = count_macs(teacher, example)
    print(f"teacher widths {widths(teacher)}, {t_macs:,} MACs")
    for name, g in got.items():
        macs = count_macs(models[name], example)
        cells = []
        for key in ("ort_latency", "ort_throughput", "eager_latency", "eager_throughput"):
            lo, hi = g[f"{key}_speedup_range"]
            cells.append(f"{key} {g[f'{key}_speedup']:.2f} [{lo:.2f}, {hi:.2f}]")
        print(
            f"{name}: widths {widths(models[name])}, MACs ÷ {t_macs / macs:.2f}, "
            f"teacher ORT b1 {g['teacher_ort_latency_ms'] * 1e3:.1f} µs, "
            f"student {g['student_ort_latency_ms'] * 1e3:.1f} µs; " + "; ".join(cells)
        )


if __name__ == "__main__":
    main()
