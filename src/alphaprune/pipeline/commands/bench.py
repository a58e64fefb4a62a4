"""`alphaprune bench`: time fit against a plain PyTorch loop, the blend, and the student."""

from __future__ import annotations

from pathlib import Path

from alphaprune.branches.kinds import BRANCHES
from alphaprune.devices import resolve_device
from alphaprune.files import write_json
from alphaprune.pipeline.deploy import bench
from alphaprune.pipeline.params.base import ConfigError
from alphaprune.runtime import Runtime


def add_arguments(p) -> None:
    p.add_argument("--model", default="resnet20")
    p.add_argument("--branch", default="pointwise", choices=list(BRANCHES))
    p.add_argument("--input-size", type=int, nargs=3, default=[3, 32, 32], metavar=("C", "H", "W"))
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--n-train", type=int, default=16384, help="synthetic training images")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=4, help="the first is a warm-up, not counted")
    p.add_argument("--device", default="auto")
    p.add_argument("--compile", action="store_true", help="torch.compile in the project's fit")
    p.add_argument(
        "--min-run-time",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds each timed statement is repeated for",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers here")


def run(args) -> None:
    if args.epochs < 2:
        raise ConfigError("bench: --epochs must be at least 2 (the first is a warm-up)")
    if not 1 <= args.batch_size <= args.n_train:
        raise ConfigError(
            f"bench: --batch-size must be in [1, --n-train={args.n_train}], got {args.batch_size}"
        )
    setup = bench.BenchSetup(
        model=args.model,
        shape=tuple(args.input_size),
        num_classes=args.num_classes,
        n_train=args.n_train,
        batch_size=args.batch_size,
        epochs=args.epochs,
        branch=args.branch,
        min_run_time=args.min_run_time,
    )
    result = bench.run(setup, Runtime(resolve_device(args.device), compile=args.compile))
    rows = [
        ("device", result["device"]),
        ("model / batch", f"{setup.model} / {setup.batch_size}, {result['n_train']} images"),
        (
            "train img/s: fit | plain loop",
            f"{result['fit_img_s']:.0f} | "
            f"{result['plain_img_s']:.0f}  (fit/plain {result['fit_over_plain']:.2f})",
        ),
        (
            "train step ms: original | student | blend",
            f"{result['step_ms_original']:.2f} | {result['step_ms_student']:.2f} | "
            f"{result['step_ms_blend']:.2f}  (blend/(original+student) "
            f"{result['blend_over_sum']:.2f}; only branches training: "
            f"{result['step_ms_blend_branches_only']:.2f}, with layer distillation "
            f"{result['step_ms_blend_branches_distill']:.2f})",
        ),
        (
            "inference ms/batch: teacher | student",
            f"{result['teacher_infer_ms']:.2f} | {result['student_infer_ms']:.2f}  "
            f"(student/teacher {result['student_over_teacher_latency']:.2f})",
        ),
        (
            "MACs/image: teacher | student",
            f"{result['teacher_macs']:,} | {result['student_macs']:,}"
            f"  (student/teacher {result['student_over_teacher_macs']:.2f})",
        ),
        (
            "params: teacher | student",
            f"{result['teacher_params']:,} | {result['student_params']:,}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    if args.json:
        write_json(args.json, result)
