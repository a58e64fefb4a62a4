"""`alphaprune` — the command line. Thin: parse, validate, call a stage, report.

Every command takes explicit input and output paths (the Snakefile and dvc.yaml pass the same
ones), validates the params before doing anything, and ends a failure with one line naming what
is wrong and exit status 2 (``--debug`` shows the traceback).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pandas as pd
import torch

from alphaprune import __version__, stages
from alphaprune.budget import BudgetError, allocate
from alphaprune.config import ConfigError, load_params
from alphaprune.data import DataError
from alphaprune.evaluate import evaluate
from alphaprune.export import ModelFileError, load_model
from alphaprune.files import atomic_path, write_json
from alphaprune.models import ModelError, build_model
from alphaprune.train import CheckpointError, DivergenceError

log = logging.getLogger("alphaprune")
# Errors a user causes and can fix: one line and exit 2 (--debug shows the traceback).
USER_ERRORS = (ConfigError, DataError, ModelFileError, BudgetError, ModelError, DivergenceError,
               CheckpointError, FileNotFoundError)  # fmt: skip


class Progress:
    """Per-epoch progress: a bar on a terminal, plain log lines otherwise (e.g. in a log file)."""

    def __init__(self, label: str, total: int):
        self.label = label
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=label, unit="epoch", leave=False)

    def __call__(self, row: dict) -> None:
        alpha = "-" if row["alpha"] is None else f"{row['alpha']:.3f}"
        text = (f"epoch {row['epoch']} α={alpha} train_acc={row['train_acc']:.4f} "
                f"val_acc={row['val_acc']:.4f} loss={row['train_loss']:.4f}")  # fmt: skip
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text.split(" ", 2)[2])
        else:
            log.info("%s: %s", self.label, text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _params(args):
    return load_params(args.params or [Path("params.yaml")], args.set)


def cmd_check(args) -> None:
    import yaml

    from alphaprune.config import merge_files

    files = args.params or [Path("params.yaml")]
    params = _params(args)  # validates: a bad file ends here with one line
    if args.write:
        raw = merge_files(files, args.set)
        with atomic_path(args.write) as tmp:
            tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
        log.info("wrote the merged params to %s", args.write)
        return
    grid = {name: cfg.model_dump(mode="json") for name, cfg in params.variants.items()}
    print(yaml.safe_dump({"variants": grid}, sort_keys=False), end="")
    log.info("%s: valid; %d variants", " + ".join(map(str, files)), len(grid))


def cmd_prepare(args) -> None:
    card = stages.prepare(_params(args), args.out)
    log.info("prepared %s: %d train, %d val, %d test", card["name"], card["n_train"],
             card["n_val"], card["n_test"])  # fmt: skip


def cmd_pretrain(args) -> None:
    params = _params(args)
    progress = Progress("teacher", params.teacher.epochs)
    metrics = stages.pretrain(params, args.data, args.out, on_epoch=progress)
    progress.close()
    log.info("teacher: test_acc=%.4f params=%d", metrics["test_acc"], metrics["params"])


def cmd_prune(args) -> None:
    params = _params(args)
    cfg = params.variant(args.variant)
    progress = Progress(args.variant, cfg.epochs)
    out = stages.prune(params, args.variant, args.data, args.teacher, args.out, on_epoch=progress)
    progress.close()
    log.info("%s: achieved=%.4f val_acc=%.4f", args.variant, out["achieved"], out["val_acc"])


def cmd_evaluate(args) -> None:
    params = _params(args)
    from alphaprune import data

    prepared = data.load(args.data)
    runtime = stages.runtime_from(params.runtime)
    teacher, _ = load_model(args.teacher, runtime.device)
    student, _ = load_model(args.student, runtime.device)
    (test,) = stages.splits(prepared, runtime, "test")
    metrics = evaluate(
        student, teacher, test,
        teacher_metrics=json.loads(Path(args.teacher_metrics).read_text()),
        history=pd.read_csv(args.history).to_dict("records"),
        steps=pd.read_csv(args.steps).to_dict("records"),
        shape=prepared.shape, cfg=params.eval, runtime=runtime, seed=params.seed,
    )  # fmt: skip
    write_json(args.out, metrics)
    log.info("%s: test_acc=%.4f achieved=%.4f", args.student, metrics["test_acc"],
             metrics["achieved"])  # fmt: skip


def _runs(params, variants_dir: Path):
    """Each variant's history, α steps and metrics, read from `variants_dir`/<variant>/."""
    names = list(params.variants)
    histories = {n: pd.read_csv(variants_dir / n / "history.csv") for n in names}
    steps = {n: pd.read_csv(variants_dir / n / "steps.csv") for n in names}
    metrics = pd.DataFrame(
        [json.loads((variants_dir / n / "metrics.json").read_text()) for n in names], index=names
    )
    return histories, steps, metrics


def cmd_plots(args) -> None:
    from alphaprune import plots

    params = _params(args)
    histories, steps, metrics = _runs(params, args.variants)
    teacher = json.loads((args.teacher / "metrics.json").read_text())
    paths = plots.all_figures(histories, steps, metrics, teacher, args.out)
    log.info("wrote %d figures to %s", len(paths), args.out)


def cmd_report(args) -> None:
    from alphaprune import report

    params = _params(args)
    _, _, metrics = _runs(params, args.variants)
    teacher = json.loads((args.teacher / "metrics.json").read_text())
    summary = sorted(p for p in args.plots.glob("*.png") if not p.name.startswith("training_"))
    per_variant = [args.plots / f"training_{n}.png" for n in params.variants]
    text = report.render(metrics, teacher, params, summary + per_variant, args.out.parent)
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    log.info("wrote %s", args.out)


def cmd_plan(args) -> None:
    c, h, w = args.input_size
    model = build_model(args.model, args.num_classes, in_channels=c, image_size=h).eval()
    plan = allocate(model, args.branch, args.amount, torch.zeros(2, c, h, w), args.exclude)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return
    rows = pd.DataFrame(plan.to_dict()["layers"])
    # size: rank (lowrank) or kept weights (sparse); a pointwise 1x1 has none.
    print(rows.fillna("-").to_string(index=False) if len(rows) else "(no layers)")
    print(f"excluded: {', '.join(plan.excluded)}")
    print(f"teacher {plan.teacher_params:,} -> student {plan.student_params:,} parameters; "
          f"removes {plan.achieved:.4f} (target {plan.amount})")  # fmt: skip


def cmd_bench(args) -> None:
    from alphaprune import bench
    from alphaprune.devices import resolve_device
    from alphaprune.runtime import Runtime

    setup = bench.BenchSetup(
        model=args.model, shape=tuple(args.input_size), num_classes=args.num_classes,
        n_train=args.n_train, batch_size=args.batch_size, epochs=args.epochs, branch=args.branch,
        min_run_time=args.min_run_time,
    )  # fmt: skip
    if args.epochs < 2:
        raise ConfigError("bench: --epochs must be at least 2 (the first is a warm-up)")
    if not 1 <= args.batch_size <= args.n_train:
        raise ConfigError(f"bench: --batch-size must be in [1, --n-train={args.n_train}], "
                          f"got {args.batch_size}")  # fmt: skip
    result = bench.run(setup, Runtime(resolve_device(args.device), compile=args.compile))
    rows = [
        ("device", result["device"]),
        ("model / batch", f"{setup.model} / {setup.batch_size}, {result['n_train']} images"),
        ("train img/s: fit | plain loop", f"{result['fit_img_s']:.0f} | "
         f"{result['plain_img_s']:.0f}  (fit/plain {result['fit_over_plain']:.2f})"),
        ("train step ms: original | student | blend",
         f"{result['step_ms_original']:.2f} | {result['step_ms_student']:.2f} | "
         f"{result['step_ms_blend']:.2f}  (blend/(original+student) "
         f"{result['blend_over_sum']:.2f}; only branches training: "
         f"{result['step_ms_blend_branches_only']:.2f})"),
        ("inference ms/batch: teacher | student",
         f"{result['teacher_infer_ms']:.2f} | {result['student_infer_ms']:.2f}  "
         f"(student/teacher {result['student_over_teacher_latency']:.2f})"),
        ("MACs/image: teacher | student", f"{result['teacher_macs']:,} | {result['student_macs']:,}"
         f"  (student/teacher {result['student_over_teacher_macs']:.2f})"),
        ("params: teacher | student", f"{result['teacher_params']:,} | "
         f"{result['student_params']:,}"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    if args.json:
        write_json(args.json, result)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alphaprune", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=__version__)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, fn, help):
        sp = sub.add_parser(name, help=help)
        sp.set_defaults(fn=fn)
        if name not in ("plan", "bench"):
            sp.add_argument(
                "--params", type=Path, action="append", metavar="FILE",
                help="params file (default params.yaml); repeat to merge a preset over it",
            )  # fmt: skip
            sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                            help="override a params key, e.g. prune.amount=0.5")  # fmt: skip
        return sp

    sp = command("check", cmd_check, "validate params and print every variant's full settings")
    sp.add_argument(
        "--write", type=Path, metavar="FILE",
        help="write the merged params (e.g. a preset over params.yaml) to FILE",
    )  # fmt: skip

    sp = command("prepare", cmd_prepare, "decode the dataset once into a tensor file + card")
    sp.add_argument("--out", type=Path, required=True, help="the .pt file (card: .json beside)")

    sp = command("pretrain", cmd_pretrain, "train the teacher")
    sp.add_argument("--data", type=Path, required=True)
    sp.add_argument("--out", type=Path, required=True, help="folder for model.pt, metrics, history")

    sp = command("prune", cmd_prune, "prune the teacher with one variant's recipe")
    sp.add_argument("--variant", required=True)
    sp.add_argument("--data", type=Path, required=True)
    sp.add_argument("--teacher", type=Path, required=True)
    sp.add_argument("--out", type=Path, required=True, help="folder for student.pt, histories")

    sp = command("evaluate", cmd_evaluate, "measure a student against its teacher")
    for name in ("data", "teacher", "teacher-metrics", "student", "history", "steps", "out"):
        sp.add_argument(f"--{name}", type=Path, required=True)

    sp = command("plots", cmd_plots, "draw the figures of every variant")
    sp.add_argument("--teacher", type=Path, required=True, help="the teacher's results folder")
    sp.add_argument("--variants", type=Path, required=True, help="folder of variant folders")
    sp.add_argument("--out", type=Path, required=True, help="folder for the PNG files")

    sp = command("report", cmd_report, "write the Markdown report")
    sp.add_argument("--teacher", type=Path, required=True, help="the teacher's results folder")
    sp.add_argument("--variants", type=Path, required=True, help="folder of variant folders")
    sp.add_argument("--plots", type=Path, required=True, help="folder of the figures")
    sp.add_argument("--out", type=Path, required=True, help="the report's .md file")

    sp = command("plan", cmd_plan, "show which layers a budget prunes, without training")
    sp.add_argument("--model", required=True)
    sp.add_argument("--branch", default="pointwise", choices=["pointwise", "lowrank", "sparse"])
    sp.add_argument("--amount", type=float, default=0.65)
    sp.add_argument("--num-classes", type=int, default=10)
    sp.add_argument("--input-size", type=int, nargs=3, default=[3, 32, 32], metavar=("C", "H", "W"))
    sp.add_argument("--exclude", nargs="*", default=None, help="glob patterns of layer names")
    sp.add_argument("--json", action="store_true")

    sp = command(
        "bench", cmd_bench, "time fit against a plain PyTorch loop, the blend, the student"
    )
    sp.add_argument("--model", default="resnet20")
    sp.add_argument("--branch", default="pointwise", choices=["pointwise", "lowrank", "sparse"])
    sp.add_argument("--input-size", type=int, nargs=3, default=[3, 32, 32], metavar=("C", "H", "W"))
    sp.add_argument("--num-classes", type=int, default=10)
    sp.add_argument("--n-train", type=int, default=16384, help="synthetic training images")
    sp.add_argument("--batch-size", type=int, default=256)
    sp.add_argument("--epochs", type=int, default=4, help="the first is a warm-up, not counted")
    sp.add_argument("--device", default="auto")
    sp.add_argument("--compile", action="store_true", help="torch.compile in the project's fit")
    sp.add_argument("--min-run-time", type=float, default=1.0, metavar="S",
                    help="seconds each timed statement is repeated for")  # fmt: skip
    sp.add_argument("--json", type=Path, metavar="FILE", help="also write the numbers here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)  # fmt: skip
    # torch.utils.benchmark's import warns that a CPU-only machine has no CUDA: not news here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        args.fn(args)
    except USER_ERRORS as err:
        if args.debug:
            raise
        print(f"alphaprune {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
