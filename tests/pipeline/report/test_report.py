"""The report: what each variant changes, one row per variant sorted by test accuracy, figure
links relative to the report's folder."""

from __future__ import annotations

import numpy as np
import pandas as pd

from alphaprune.pipeline.report import deployment, markdown, stats, tables
from alphaprune.pipeline.report.results import TITLES, variant_means

TEACHERS = pd.DataFrame([{"test_acc": 0.99, "params": 24_058, "epochs": 20}], index=["t0"])


def _results(accs: dict[str, list[float]], n_images=400):
    """Per run metrics and predictions for variants with the given accuracy per replicate: the
    first `acc * n_images` images right."""
    rows, correct = [], {}
    for name, values in accs.items():
        for i, acc in enumerate(values):
            run = f"t0-s{i}"
            correct[name, run] = np.arange(n_images) < round(acc * n_images)
            rows.append(
                {key: 0.5 for key in TITLES}
                | {"variant": name, "replicate": run, "test_acc": acc, "test_size": n_images}
            )
    return pd.DataFrame(rows).set_index(["variant", "replicate"]), correct


def _render(params, accs, tmp_path, figures=()):
    per_run, correct = _results(accs)
    table = stats.summarise(per_run, correct, params.reference)
    return markdown.render(variant_means(per_run), table, TEACHERS, params, list(figures), tmp_path)


def test_recipe_summary_names_only_what_a_variant_changes(tiny_params):
    params = tiny_params(
        base={},
        deep={"schedule": {"rate": 0.05}, "init": "lsq"},
        one={"schedule": {"kind": "oneshot"}},
    )
    assert tables.recipe_summary(params, "base") == "(defaults)"
    assert tables.recipe_summary(params, "deep") == "init=lsq, schedule.rate=0.05"
    assert tables.recipe_summary(params, "one").startswith("schedule.kind=oneshot")


def test_render_sorts_by_test_accuracy_and_links_figures(tiny_params, tmp_path):
    params = tiny_params(low={}, high={"init": "pretrained"})
    figure = tmp_path / "plots" / "final_accuracy.png"
    text = _render(params, {"low": [0.9], "high": [0.95]}, tmp_path, [figure])
    tables = text.split("### Each variant's recipe and other figures")
    rows = [line for line in tables[0].splitlines() if line.startswith("| ")]
    titles = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert titles == [
        "variant",
        "test acc [95%]",
        "Δ test pp [95%]",
        "verdict",
        "removed",
        "ORT × b1",
        "ORT × b64",
    ]
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["high", "low"]
    # the recipe and the other figures follow, in the same order
    rows = [line for line in tables[1].splitlines() if line.startswith("| ")]
    assert rows[0].split("|")[2].strip() == "recipe"
    assert [r.split("|")[1].strip() for r in rows[1:]] == ["high", "low"]
    assert "![final_accuracy](plots/final_accuracy.png)" in text
    assert "24,058 parameters" in text and "remove 65%" in text


def test_a_report_written_outside_the_results_links_figures_back_up(tiny_params, tmp_path):
    params = tiny_params(low={}, high={"init": "pretrained"})
    figure = tmp_path / "results" / "plots" / "final_accuracy.png"
    text = _render(params, {"low": [0.9], "high": [0.95]}, tmp_path / "elsewhere", [figure])
    assert "![final_accuracy](../results/plots/final_accuracy.png)" in text


def test_one_run_gives_wilson_intervals_and_a_mcnemar_verdict(tiny_params, tmp_path):
    params = tiny_params(ref={}, same={"init": "pretrained"}, good={"init": "lsq"})
    text = _render(params, {"ref": [0.80], "same": [0.805], "good": [0.95]}, tmp_path)
    assert "Test set: 400 images; one image is 0.25 percentage points" in text
    assert "Wilson" in text and "McNemar" in text
    assert "Better than `ref`: `good`." in text
    assert "No detectable difference: `same`." in text
    good = next(line for line in text.splitlines() if line.startswith("| good"))
    assert "0.9500 [" in good and "+15.00" in good and "better" in good


def test_replicates_give_t_intervals_and_a_paired_verdict(tiny_params, tmp_path):
    params = tiny_params(ref={}, bad={"init": "pretrained"})
    text = _render(params, {"ref": [0.90, 0.91, 0.92], "bad": [0.70, 0.72, 0.71]}, tmp_path)
    assert "Each variant ran 3 times" in text and "paired t" in text
    assert "Worse: `bad`." in text and "Better than `ref`: none." in text
    assert "Exact McNemar p-value per replicate" in text and "t0-s2" in text


def _render_twins(params, accs, tmp_path):
    from alphaprune.pipeline.params import twins

    per_run, correct = _results(accs)
    table = stats.summarise(per_run, correct, params.reference)
    pairs = twins.pairs(params)
    found = {a: t for a, t in pairs.items() if t}
    paired = stats.compare_pairs(per_run, correct, found)
    untwinned = [a for a, t in pairs.items() if not t]
    means = variant_means(per_run)
    return markdown.render(means, table, TEACHERS, params, [], tmp_path, None, paired, untwinned)


def test_each_annealed_recipe_is_set_against_its_oneshot_twin(tiny_params, tmp_path):
    params = tiny_params(
        slow={"optimizer": {"lr": 0.005}, "finetune_lr": 0.02},
        fast={"optimizer": {"lr": 0.02}},
        twin={"schedule": {"kind": "oneshot"}, "optimizer": {"lr": 0.02}},
        alone={"init": "lsq"},
        close={"optimizer": {"lr": 0.001}, "finetune_lr": 0.02},
    )
    accs = {
        "slow": [0.60, 0.61, 0.62],
        "fast": [0.96, 0.97, 0.98],
        "twin": [0.80, 0.81, 0.82],
        "alone": [0.85, 0.85, 0.85],
        "close": [0.81, 0.80, 0.8225],
    }
    text = _render_twins(params, accs, tmp_path)
    section = text.split("## Does the anneal pay?")[1].split("## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    names = [r.split("|")[1].strip().strip("`") for r in rows[1:]]
    assert names == ["fast", "close", "slow"]  # best anneal first
    fast, close, slow = rows[1:]
    assert "replicates to detect" in rows[0]
    assert fast.rstrip(" |").endswith("–")  # detected: nothing to plan
    assert "no detectable difference" in close
    assert close.split("|")[-2].strip() not in ("", "–")  # a number, or why none would do
    assert "`twin`" in fast and "0.9700 [" in fast and "0.8100 [" in fast and "+16.00 [" in fast
    assert "the anneal pays" in fast and "the anneal costs accuracy" in slow
    assert "-20.00 [" in slow
    assert "without a twin in this grid: `alone`" in section
    assert "alone_oneshot: {<<: *alone, schedule: {kind: oneshot}}" in section


def test_a_grid_without_annealed_recipes_has_no_twin_section(tiny_params, tmp_path):
    params = tiny_params(a={"schedule": {"kind": "oneshot"}}, b={"schedule": {"kind": "oneshot"}})
    text = _render_twins(params, {"a": [0.8], "b": [0.9]}, tmp_path)
    assert "Does the anneal pay?" not in text


def test_summary_holds_the_means(tiny_params):
    per_run, _ = _results({"a": [0.9, 0.92], "b": [0.8, 0.8]})
    out = tables.summary(variant_means(per_run), TEACHERS)
    assert out == {"acc": {"teacher": 0.99, "a": 0.91, "b": 0.8}}


def _deployed(per_run, sparse=(), busy=()):
    """`per_run` with the figures the export and latency stages add, on one CPU thread."""
    out = per_run.copy()
    out["params_ratio"], out["macs_ratio"] = 3.1, 1.8
    out["ort_latency_speedup"], out["ort_throughput_speedup"] = 1.4, 1.6
    out["eager_latency_speedup"], out["student_ort_latency_ms"] = 1.1, 0.25
    out["onnx_top1_agreement"], out["onnx_max_abs_logit_diff"] = 1.0, 2e-6
    variants = out.index.get_level_values("variant")
    out["onnx_sparse_as_dense"] = variants.isin(sparse)
    out["other_cpu_use_cores"] = [1.3 if v in busy else 0.02 for v in variants]
    conditions = {"latency_threads": 1, "latency_batch": 1, "throughput_batch": 64}
    conditions |= {"latency_rounds": 3, "latency_seconds": 0.03}
    conditions |= {"machine_cpu": "Test CPU", "machine_cpus": 2}
    conditions |= {"torch_version": "2.x", "onnxruntime_version": "1.x"}
    return out.assign(**conditions)


def test_deployment_states_the_conditions_and_sets_speedups_beside_the_ratios():
    per_run, _ = _results({"a": [0.9, 0.92], "d": [0.8]})
    lines = deployment.deployment(_deployed(per_run), variant_means(_deployed(per_run)))
    text = "\n".join(lines)
    assert lines[0] == "## Deployment: is the student faster?"
    assert "on Test CPU (2 CPUs)" in text and "1 thread, at batch 1 (latency) and 64" in text
    assert "median of 3 rounds" in text and "CUDA" not in text
    assert "forward passes (for at least 0.03 s, after a warm-up half as long)" in text
    header = next(line for line in text.splitlines() if line.startswith("| "))
    for title in ("params ÷", "MACs ÷", "ORT speedup (latency batch)", "ONNX top-1 agreement"):
        assert title in header
    rows = [
        [c.strip() for c in line.split("|")[1:-1]]
        for line in text.splitlines()
        if line.startswith("| ")
    ]
    titles = rows[0]
    cells = {row[0]: dict(zip(titles, row, strict=True)) for row in rows[1:]}
    assert list(cells) == ["a", "d"]
    assert cells["a"]["params ÷"] == "3.1" and cells["a"]["ORT speedup (latency batch)"] == "1.4"
    assert "exported dense" not in text and "Contended" not in text


def test_deployment_of_timings_that_did_not_record_their_seconds():
    per_run, _ = _results({"a": [0.9]})
    deployed = _deployed(per_run).drop(columns="latency_seconds")  # an older latency.json
    text = "\n".join(deployment.deployment(deployed, variant_means(deployed)))
    assert "each round the median of repeated forward passes after a warm-up;" in text


def test_deployment_names_sparse_students_and_contended_timings():
    per_run, _ = _results({"a": [0.9], "d": [0.8], "e": [0.8]})
    deployed = _deployed(per_run, sparse=("d",), busy=("e",))
    text = "\n".join(deployment.deployment(deployed, variant_means(deployed)))
    assert "Sparse students (`d`) are exported dense" in text
    assert "**Contended timings**" in text and "`e` 1.30 cores" in text and "`a`" not in text


def test_results_without_timings_have_no_deployment_section(tiny_params, tmp_path):
    per_run, _ = _results({"a": [0.9]})
    assert deployment.deployment(per_run, variant_means(per_run)) == []
    text = _render(tiny_params(a={}), {"a": [0.9]}, tmp_path)
    assert "Deployment" not in text


def test_deployment_says_when_runs_were_timed_unalike_or_not_at_all():
    per_run, _ = _results({"a": [0.9, 0.92], "b": [0.8]})
    deployed = _deployed(per_run)
    deployed.loc[("a", "t0-s1"), "machine_cpu"] = "Other CPU"  # e.g. two SLURM node types
    deployed.loc[("b", "t0-s0"), ["ort_latency_speedup", "machine_cpus"]] = float("nan")
    text = "\n".join(deployment.deployment(deployed, variant_means(deployed)))
    assert "**Not every run was timed alike** (`machine_cpu` differ" in text
    assert "on Test CPU (2 CPUs)" in text  # the first timed run's conditions
    row = next(line for line in text.splitlines() if line.startswith("| b"))
    assert "–" in row  # b was not timed: a dash, not nan


def test_the_headline_table_fits_a_screen_with_speedups_and_their_spread(tiny_params, tmp_path):
    """27 variants with long names, the widest cells the table can hold: under 160 columns.
    A speedup whose spread is wider than its distance from 1 is marked."""
    names = [f"v{i:02d}_pretrained_oneshot" for i in range(27)]  # 23 characters
    params = tiny_params(**{n: {} for n in names})
    per_run, correct = _results({n: [0.9 + i / 1000] for i, n in enumerate(names)})
    per_run = _deployed(per_run).assign(ort_latency_speedup=1.02, ort_throughput_speedup=1.45)
    per_run["ort_latency_speedup_range"] = [[0.93, 1.08]] * len(per_run)
    per_run["ort_throughput_speedup_range"] = [[1.43, 1.50]] * len(per_run)
    table = stats.summarise(per_run, correct, params.reference)
    text = markdown.render(
        variant_means(per_run), table, TEACHERS, params, [], tmp_path, per_run=per_run
    )
    head = text.split("### Each variant's recipe")[0]
    rows = [line for line in head.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 27 and max(map(len, rows)) <= 160
    assert "1.02 [0.93, 1.08] ?" in rows[1] and "1.45 [1.43, 1.50] |" in rows[1]


def test_students_slower_than_their_teacher_in_every_round_are_named_with_the_likely_cause():
    per_run, _ = _results({"fast": [0.9], "slow": [0.9], "unsure": [0.9]})
    deployed = _deployed(per_run)
    deployed["ort_latency_speedup_range"] = [[1.2, 1.3], [0.80, 0.95], [0.9, 1.1]]
    deployed["ort_throughput_speedup_range"] = [[1.2, 1.3], [1.0, 1.1], [0.9, 1.1]]
    text = "\n".join(deployment.deployment(deployed, variant_means(deployed)))
    assert "**Slower than their teacher** in onnxruntime, in every timing round: `slow` (" in text
    assert "`fast`" not in text.split("Slower")[1] and "`unsure`" not in text.split("Slower")[1]
    assert "`prune.round_to`" in text


def test_deployment_sets_each_latency_target_beside_its_prediction_and_measurement():
    """Variant `near` asked 2x, was planned at 2.02x and ran 1.98x (within 5%); `coarse` asked
    1.43x and its table allowed nothing nearer than 1.7x (the plan's miss); `off` was planned at
    2.0x and ran 1.5x (the prediction's miss); `a` targets parameters and is not listed."""
    rows = {"a": [0.9], "near": [0.9, 0.9], "coarse": [0.9], "off": [0.9], "sum": [0.9]}
    per_run, _ = _results(rows)
    deployed = _deployed(per_run)
    variants = deployed.index.get_level_values("variant")
    figures = {  # asked, predicted, measured (each replicate alike), its round spread
        "near": (2.0, 2.02, 1.98, [1.9, 2.05]),
        "coarse": (1 / 0.7, 1.7, 1.72, [1.7, 1.75]),
        "off": (2.0, 2.0, 1.5, [1.45, 1.55]),
        "sum": (2.0, 2.08, 2.16, [2.1, 2.2]),  # planned 4% over, measured 4% over that
    }
    for key, i in (("target_speedup", 0), ("predicted_speedup", 1)):
        deployed[key] = [figures[v][i] if v in figures else None for v in variants]
    deployed["target_measured_speedup"] = [
        figures[v][2] if v in figures else None for v in variants
    ]
    deployed["target_measured_range"] = [figures[v][3] if v in figures else None for v in variants]
    deployed["target_batch"] = [64 if v in figures else None for v in variants]
    deployed["target_table_cpu"] = ["Other CPU" if v == "off" else None for v in variants]
    text = "\n".join(deployment.deployment(deployed, variant_means(deployed)))
    section = text[text.index("**Latency targets**") :]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in section.splitlines()
        if line.startswith("| ") and "variant" not in line
    }
    assert list(rows) == ["near", "coarse", "off", "sum"]
    assert rows["near"] == ["64", "2.00", "2.02", "1.98 [1.90, 2.05]", "-1.0%"]
    assert rows["coarse"][-1] == "+20.4%" and rows["off"][-1] == "-25.0%"
    assert "Planned further than 5% from the ask: `coarse`." in section
    assert "Measured further than 5% from the table's prediction: `off`." in section
    assert "the plan and the prediction each within it: `sum`" in section
    assert "**Tables measured on another CPU** than the latency stage's: `off` (Other CPU)" in (
        section
    )


def test_a_grid_without_latency_targets_has_no_target_table():
    per_run, _ = _results({"a": [0.9]})
    text = "\n".join(deployment.deployment(_deployed(per_run), variant_means(_deployed(per_run))))
    assert "Latency targets" not in text


def test_the_headline_states_each_variants_target(tiny_params, tmp_path):
    same = _render(tiny_params(a={}, b={}), {"a": [0.9], "b": [0.8]}, tmp_path)
    assert "target: remove 65% of the teacher's parameters." in same
    mixed = tiny_params(a={}, b={"target": "macs", "amount": 0.5})
    text = _render(mixed, {"a": [0.9], "b": [0.8]}, tmp_path)
    assert (
        "target: by variant: remove 65% of the teacher's parameters; remove 50% of the "
        "teacher's MACs." in text
    )
