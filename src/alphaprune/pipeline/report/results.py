"""Reading a pipeline's results back. Per variant and replicate,
`<variants>/<variant>/<replicate>/` holds metrics.json, predictions.csv (one row per test image),
history.csv (one row per epoch), steps.csv (one row per α step) and onnx.json (the ONNX file's
check), and `<latency>/<variant>/<replicate>/latency.json` the timings of student and teacher
(one stage times the whole grid, each architecture once); per teacher,
`<teachers>/<teacher>/` holds metrics.json and history.csv. Also the titles of the metrics'
columns, shared by the report and `alphaprune compare`."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

TITLES = {  # metrics.json key -> column title
    "test_acc": "test acc",
    "noisy_test_acc": "noisy test acc",
    "agreement": "agreement",
    "achieved": "removed",
    "student_params": "params",
    "student_params_dense": "params (dense)",
    "student_macs": "MACs",
    "alpha_reached": "α reached",
    "alpha_hold_train": "α held (train)",
    "alpha_hold_val": "α held (val)",
    "alpha_step_drop_pp": "worst α step (val pp)",
    "collapse_drop_pp": "drop at α=0 (val pp)",
    "epochs": "epochs",
    "wall_time_s": "train s",
}
# The deployment figures, from onnx.json and latency.json: the report's own table.
DEPLOY_TITLES = {
    "params_ratio": "params ÷",
    "macs_ratio": "MACs ÷",
    "ort_latency_speedup": "ORT speedup (latency batch)",
    "ort_throughput_speedup": "ORT speedup (throughput batch)",
    "eager_latency_speedup": "eager speedup (latency batch)",
    "eager_throughput_speedup": "eager speedup (throughput batch)",
    "cuda_latency_speedup": "CUDA speedup (latency batch)",
    "cuda_throughput_speedup": "CUDA speedup (large batch)",
    "student_ort_latency_ms": "student ORT ms (latency batch)",
    "onnx_top1_agreement": "ONNX top-1 agreement",
    "onnx_max_abs_logit_diff": "ONNX max abs Δlogit",
}
# Beside metrics.json (evaluate), read into the same row when they are there.
RUN_FILES = ("onnx.json",)
LATENCY_FILE = "latency.json"  # under the latency stage's folder, in the same layout
Reader = Callable[[Path], str]
Run = tuple[str, str]  # (variant, replicate)


def read_metrics(
    names: list[str],
    runs: list[str],
    variants_dir: Path,
    read_text: Reader = Path.read_text,
    missing_ok: bool = False,
    latency_dir: Path | None = None,
) -> pd.DataFrame:
    """metrics.json of every variant and replicate, with its onnx.json and (from `latency_dir`)
    latency.json where they are there: one row each, indexed by (variant, replicate) in the
    order given, with the ratios teacher ÷ student of parameters and MACs. `read_text` reads a
    file (e.g. as a DVC experiment has it); with `missing_ok`, a run without metrics (not run
    yet) is a row of NaN."""
    rows = []
    for name in names:
        for run in runs:
            folder = variants_dir / name / run
            try:
                row = json.loads(read_text(folder / "metrics.json"))
            except FileNotFoundError:
                if not missing_ok:
                    raise
                row = {}
            extras = [folder / f for f in RUN_FILES]
            if latency_dir is not None:
                extras.append(latency_dir / name / run / LATENCY_FILE)
            for extra in extras:
                with contextlib.suppress(FileNotFoundError):
                    row |= json.loads(read_text(extra))
            rows.append(row)
    index = pd.MultiIndex.from_product([names, runs], names=["variant", "replicate"])
    table = pd.DataFrame(rows, index=index)
    for what in ("params", "macs"):
        if {f"teacher_{what}", f"student_{what}"} <= set(table.columns):
            table[f"{what}_ratio"] = table[f"teacher_{what}"] / table[f"student_{what}"]
    return table


def variant_means(per_run: pd.DataFrame) -> pd.DataFrame:
    """The mean of every numeric figure over each variant's replicates, in the given order."""
    numeric = per_run.select_dtypes("number")
    return numeric.groupby(level="variant", sort=False).mean()


def read_teachers(teachers: list[str], teacher_dir: Path, read_text: Reader = Path.read_text):
    """metrics.json of every teacher, one row each, indexed by its folder name."""
    rows = [json.loads(read_text(teacher_dir / t / "metrics.json")) for t in teachers]
    return pd.DataFrame(rows, index=pd.Index(teachers, name="teacher"))


def read_correct(names: list[str], runs: list[str], variants_dir: Path) -> dict[Run, np.ndarray]:
    """For every variant and replicate, whether its student got each test image right."""
    out = {}
    for name in names:
        for run in runs:
            text = (variants_dir / name / run / "predictions.csv").read_text()
            table = pd.read_csv(io.StringIO(text))
            out[name, run] = (table["label"] == table["pred"]).to_numpy()
    return out


def read_curves(
    names: list[str], runs: list[str], variants_dir: Path
) -> tuple[dict[Run, pd.DataFrame], dict[Run, pd.DataFrame]]:
    """Every variant's and replicate's history (per epoch) and α steps."""
    keys = [(n, r) for n in names for r in runs]
    histories = {k: pd.read_csv(variants_dir / k[0] / k[1] / "history.csv") for k in keys}
    steps = {k: pd.read_csv(variants_dir / k[0] / k[1] / "steps.csv") for k in keys}
    return histories, steps
