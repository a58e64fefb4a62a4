"""`alphaprune compare`: the variants side by side, one row each, in 120 columns.

From the workspace's results, one DVC experiment's, or one experiment against another. The width
holds for variant names of up to 20 characters."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from alphaprune.errors import UserError
from alphaprune.pipeline.commands._shared import add_params_arguments, load
from alphaprune.pipeline.params.schema import ReplicatesConfig
from alphaprune.pipeline.report import compare
from alphaprune.pipeline.report.results import read_metrics, variant_means

Reader = Callable[[Path], str]


def add_arguments(p) -> None:
    add_params_arguments(p)
    p.add_argument(
        "--variants",
        type=Path,
        default=Path("results/variants"),
        help="folder of variant folders (default: %(default)s)",
    )
    p.add_argument(
        "--teacher",
        type=Path,
        default=Path("results/teacher"),
        help="folder of the teachers' folders (default: %(default)s)",
    )
    p.add_argument(
        "--latency",
        type=Path,
        default=Path("results/latency"),
        help="folder of the latency stage's timings (default: %(default)s)",
    )
    p.add_argument(
        "--exp",
        action="append",
        metavar="NAME",
        default=[],
        help="read a DVC experiment (its name, or any git revision) instead of the workspace; "
        "give two to compare the second with the first",
    )


def run(args) -> None:
    if len(args.exp) > 2:
        raise UserError(
            "--exp: give at most two experiments (the second is compared with the first)"
        )
    if not args.exp:
        params = load(args)
        r = params.replicates
        metrics, teacher = _results(
            args, list(params.variants), r.names(), r.teacher_names(), Path.read_text
        )
        print(f"teacher: test acc {_acc(teacher)}; {DELTA_NOTE}")
        print(compare.render(compare.table(metrics, teacher)))
        return
    runs = [(rev, *_results(args, *_at(rev))) for rev in args.exp]
    if len(runs) == 1:
        ((rev, metrics, teacher),) = runs
        print(f"{rev}: teacher test acc {_acc(teacher)}; {DELTA_NOTE}")
        print(compare.render(compare.table(metrics, teacher)))
        return
    (a, metrics_a, teacher_a), (b, metrics_b, teacher_b) = runs
    print(
        f"A = {a} (teacher {_acc(teacher_a)}), B = {b} (teacher {_acc(teacher_b)}); "
        f"Δ: B − A in percentage points; the other figures are B's; {SPEEDUP_NOTE}"
    )
    print(compare.render(compare.versus(metrics_a, metrics_b)))


SPEEDUP_NOTE = "ORT ×: speedup in onnxruntime, latency batch"
DELTA_NOTE = f"{compare.DELTA}: test acc − teacher's, in points; {SPEEDUP_NOTE}"


def _results(args, names: list[str], runs: list[str], teachers: list[str], read_text: Reader):
    """Each variant's figures and the teachers' test accuracy, means over the replicates (the
    folders `runs` under each variant's, `teachers` under the teachers')."""
    per_run = read_metrics(
        names, runs, args.variants, read_text, missing_ok=True, latency_dir=args.latency
    )
    accs = []
    for name in teachers:
        try:
            accs.append(json.loads(read_text(args.teacher / name / "metrics.json"))["test_acc"])
        except FileNotFoundError:
            pass
    return variant_means(per_run), (sum(accs) / len(accs) if accs else None)


def _at(rev: str) -> tuple[list[str], list[str], list[str], Reader]:
    """The variant names, replicate and teacher folders, and a file reader of DVC experiment (or
    git revision) `rev`. A revision from before replicates has one run per variant, in the
    variant's folder itself."""
    from dvc.api import DVCFileSystem

    try:
        fs = DVCFileSystem(".", rev=rev)
        params = yaml.safe_load(fs.read_text("params.yaml"))
    except Exception as err:  # noqa: BLE001 - DVC's errors for a bad name vary by version
        raise UserError(f"--exp {rev}: cannot read that experiment or revision ({err})") from None
    reader = lambda path: fs.read_text(Path(path).as_posix())  # noqa: E731
    names = list(params.get("variants") or {})
    if "replicates" not in params:
        return names, [""], [""], reader
    replicates = ReplicatesConfig.model_validate(params["replicates"])
    return names, replicates.names(), replicates.teacher_names(), reader


def _acc(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"
