"""The report's deployment section: whether the students are faster where they run (their ONNX
check, the speedups with their spread over rounds, under the conditions they were timed in), a
timing other processes contended flagged, and the students slower than their teacher named."""

from __future__ import annotations

import pandas as pd

from alphaprune.pipeline.report.results import DEPLOY_TITLES
from alphaprune.pipeline.report.tables import speedup_cell

CONTENDED_CORES = 0.25  # other processes' mean CPU use while timing, beyond which we warn
TARGET_TOLERANCE = 0.05  # a latency target met within ±5% of the speedup asked (issue 37's goal)


def deployment(per_run: pd.DataFrame, means: pd.DataFrame) -> list[str]:
    """The section on the students as deployed: how they were timed, each variant's speedups
    beside its parameter and MAC ratios with its ONNX check, the sparse students' dense export,
    and a warning where other processes were busy while a student was timed."""
    if "ort_latency_speedup" not in per_run.columns:
        return []  # results from before the latency stage
    timed = per_run.dropna(subset=["ort_latency_speedup"])
    first = timed.iloc[0]
    threads = int(first["latency_threads"])
    cuda = (
        f" On CUDA ({first['machine_gpu']}), PyTorch timed with CUDA events at batch "
        f"{int(first['latency_batch'])} and {int(first['cuda_batch'])}."
        if "cuda_latency_speedup" in per_run.columns and pd.notna(first.get("machine_gpu"))
        else ""
    )
    n = int(first["latency_rounds"])
    passes = (  # older latency.json files do not say how long
        f"repeated forward passes (for at least {first['latency_seconds']:g} s, after a "
        "warm-up half as long)"
        if pd.notna(first.get("latency_seconds"))
        else "repeated forward passes after a warm-up"
    )
    rounds = (
        f"Each time is the median of {n} rounds, teacher and student taking turns (who goes "
        f"first alternates), each round the median of {passes}; each speedup is the median "
        "over rounds of that round's teacher ÷ student."
        if n > 1
        else f"Each time is the median of {passes}, the teacher's just before the student's."
    )
    cpus = f" ({int(first['machine_cpus'])} CPUs)" if pd.notna(first.get("machine_cpus")) else ""
    conditions = ["machine_cpu", "machine_gpu", "latency_threads", "latency_batch"]
    conditions += ["throughput_batch", "latency_rounds", "latency_seconds"]
    conditions += ["onnxruntime_version", "torch_version"]
    varied = [k for k in conditions if k in timed.columns and timed[k].nunique() > 1]
    mixed = (
        f" **Not every run was timed alike** (`{'`, `'.join(varied)}` differ between runs: see "
        "each latency.json); the table averages over them, and the conditions stated are the "
        "first run's."
        if varied
        else ""
    )
    lines = [
        "## Deployment: is the student faster?",
        "",
        f"Timed by `alphaprune latency` in a job meant to hold the machine alone, on "
        f"{first['machine_cpu']}{cpus}, onnxruntime "
        f"{first['onnxruntime_version']} (ORT) and PyTorch {first['torch_version']} eager, "
        f"{threads} thread{'s' if threads != 1 else ''}, at batch {int(first['latency_batch'])} "
        f"(latency) and {int(first['throughput_batch'])} (throughput).{cuda} {rounds} "
        "Speedup, `params ÷` and `MACs ÷` are all teacher ÷ student: a speedup equal to "
        "`MACs ÷` means time fell as fast as the arithmetic. The ONNX check compares "
        f"onnxruntime's logits with PyTorch's on every test image.{mixed}",
        "",
    ]
    columns = [k for k in DEPLOY_TITLES if k in means.columns]
    table = means[columns].rename(columns=DEPLOY_TITLES)
    table = table.astype(object).where(table.notna(), None)  # missingval is for None, not NaN
    lines += [table.to_markdown(floatfmt=".4g", missingval="–"), ""]
    lines += slower_than_the_teacher(per_run)
    lines += latency_targets(per_run)
    if "onnx_sparse_as_dense" in per_run.columns:
        sparse = per_run["onnx_sparse_as_dense"].fillna(False).astype(bool)
        names = list(dict.fromkeys(sparse[sparse].index.get_level_values("variant")))
        if names:
            lines += [
                f"Sparse students ({', '.join(f'`{n}`' for n in names)}) are exported dense, "
                "their pruned weights stored as zeros: onnxruntime and PyTorch run a masked "
                "layer densely, so they are no faster than a dense student of the teacher's "
                "shape, whatever their `params` count says.",
                "",
            ]
    other = per_run.get("other_cpu_use_cores")
    if other is not None:
        worst = other.groupby(level="variant", sort=False).max()
        busy = worst[worst > CONTENDED_CORES]
        if len(busy):
            lines += [
                "**Contended timings**: other processes kept CPUs busy while these were timed "
                f"({', '.join(f'`{n}` {c:.2f} cores' for n, c in busy.items())}); their times "
                "measure the contention as much as the models. Rerun their latency stage with "
                "nothing else running.",
                "",
            ]
    return lines


def slower_than_the_teacher(per_run: pd.DataFrame) -> list[str]:
    """The students that ran slower than their teacher in onnxruntime beyond their timing's
    spread (every round slower), and what has made such students slow where we looked."""
    slow = []
    for key, what in (("ort_latency_speedup", "latency"), ("ort_throughput_speedup", "throughput")):
        spans = per_run.get(f"{key}_range")
        if spans is None:
            continue
        for (variant, _), span in spans.dropna().items():
            if span[1] < 1 and variant not in [v for v, _ in slow]:
                slow.append((variant, f"{speedup_cell(per_run, variant, key)} at the {what} batch"))
    if not slow:
        return []
    return [
        "**Slower than their teacher** in onnxruntime, in every timing round: "
        + "; ".join(f"`{v}` ({cell})" for v, cell in slow)
        + ". Fewer MACs did not turn into time here. Where we looked, two things did this: "
        "layer widths that are not multiples of the CPU's SIMD block (the digits CNN's channel "
        "student with widths 16, 17, 34 ran 0.97× its teacher for 2.4× fewer MACs, and 1.45× "
        "rounded to 16, 16, 32: `prune.round_to`, 8 unless set), and more layers than the "
        "teacher on inputs so small that each layer's fixed cost outweighs its arithmetic (a "
        "low-rank branch is two convolutions where there was one).",
        "",
    ]


def latency_targets(per_run: pd.DataFrame) -> list[str]:
    """The students of `prune.target: latency`: the speedup each asked for, its table's
    prediction and what the latency stage measured at the table's batch (mean over replicates,
    spread over every round), and, where one landed further than ±TARGET_TOLERANCE from the
    ask, why: the plan (its table allowed nothing nearer) or the prediction (the measured time
    is not the predicted one)."""
    if "target_speedup" not in per_run.columns:
        return []
    rows, coarse, mispredicted, both, elsewhere = [], [], [], [], []
    for variant, runs in per_run.dropna(subset=["target_speedup"]).groupby(
        level="variant", sort=False
    ):
        asked, predicted = runs["target_speedup"].iloc[0], runs["predicted_speedup"].mean()
        measured = runs.get("target_measured_speedup", pd.Series(dtype=float)).dropna()
        spans = runs.get("target_measured_range", pd.Series(dtype=object)).dropna()
        cell, off = "– (not timed at the table's batch and threads)", None
        if len(measured):
            off = measured.mean() / asked - 1
            low, high = min(r[0] for r in spans), max(r[1] for r in spans)
            cell = f"{measured.mean():.2f} [{low:.2f}, {high:.2f}]"
            if abs(off) > TARGET_TOLERANCE:
                planned_off = abs(predicted / asked - 1) > TARGET_TOLERANCE
                predicted_off = abs(measured.mean() / predicted - 1) > TARGET_TOLERANCE
                if planned_off:
                    coarse.append(variant)
                if predicted_off:
                    mispredicted.append(variant)
                if not (planned_off or predicted_off):
                    both.append(variant)
        if "target_table_cpu" in runs.columns and runs["target_table_cpu"].notna().any():
            elsewhere.append((variant, runs["target_table_cpu"].dropna().iloc[0]))
        rows.append(
            {
                "variant": variant,
                "batch": int(runs["target_batch"].iloc[0]),
                "asked ×": f"{asked:.2f}",
                "predicted ×": f"{predicted:.2f}",
                "measured ×": cell,
                "measured ÷ asked": "–" if off is None else f"{off:+.1%}",
            }
        )
    lines = [
        "**Latency targets** (`prune.target: latency`): the speedup asked (1 ÷ (1 − amount)), "
        "the one the latency table predicted for the plan, and the one measured here in "
        "onnxruntime at the table's batch (mean over replicates, [least, greatest round]).",
        "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
        "",
    ]
    if coarse:
        lines += [
            f"Planned further than {TARGET_TOLERANCE:.0%} from the ask: "
            f"{', '.join(f'`{v}`' for v in coarse)}. A plan saves at least what is asked, in "
            "blocks of `round_to` channels (the knapsack with the least importance lost, then "
            "every block it can give back; `ranking: global` the globally least important "
            "channels, which can overshoot by a block): its table allowed no plan nearer the "
            "ask. A finer `latency.table.round_to` (and `prune.round_to`) gives it more.",
            "",
        ]
    if mispredicted:
        lines += [
            f"Measured further than {TARGET_TOLERANCE:.0%} from the table's prediction: "
            f"{', '.join(f'`{v}`' for v in mispredicted)}. A table measured in too few rounds "
            "or too briefly, groups that meet at a layer (which it predicts least well: "
            "docs/benchmarks.md), or a timing here as spread as the difference.",
            "",
        ]
    if both:
        lines += [
            f"Further than {TARGET_TOLERANCE:.0%} from the ask, the plan and the prediction each "
            f"within it: {', '.join(f'`{v}`' for v in both)} (their misses add up).",
            "",
        ]
    if elsewhere:
        lines += [
            "**Tables measured on another CPU** than the latency stage's: "
            + ", ".join(f"`{v}` ({cpu})" for v, cpu in elsewhere)
            + ". Their predictions are for that CPU; measure the table where the students run.",
            "",
        ]
    return lines
