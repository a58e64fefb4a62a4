"""Reading results back: a run's row joins its metrics.json with the ONNX check and the timings
beside it, and carries the teacher ÷ student ratios the deployment table sets speedups against."""

from __future__ import annotations

import json

import pytest

from alphaprune.pipeline.report.results import read_metrics


def _write(folder, name, data):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(data))


def test_a_row_joins_the_onnx_check_and_the_timings_and_has_the_ratios(tmp_path):
    run = tmp_path / "variants" / "a" / "t0-s0"
    metrics = {"test_acc": 0.9, "teacher_params": 1000, "student_params": 250}
    _write(run, "metrics.json", metrics | {"teacher_macs": 9000, "student_macs": 3000})
    _write(run, "onnx.json", {"onnx_top1_agreement": 1.0})
    # the latency stage's, in its own folder with the same layout
    _write(tmp_path / "latency" / "a" / "t0-s0", "latency.json", {"ort_latency_speedup": 1.5})
    row = read_metrics(
        ["a"], ["t0-s0"], tmp_path / "variants", latency_dir=tmp_path / "latency"
    ).loc[("a", "t0-s0")]
    assert row["test_acc"] == 0.9 and row["onnx_top1_agreement"] == 1.0
    assert row["ort_latency_speedup"] == 1.5
    assert row["params_ratio"] == pytest.approx(4.0) and row["macs_ratio"] == pytest.approx(3.0)


def test_runs_from_before_the_export_and_latency_stages_still_read(tmp_path):
    _write(tmp_path / "a" / "t0-s0", "metrics.json", {"test_acc": 0.9})
    table = read_metrics(["a", "b"], ["t0-s0"], tmp_path, missing_ok=True)
    assert table.loc[("a", "t0-s0"), "test_acc"] == 0.9
    assert "ort_latency_speedup" not in table.columns and "params_ratio" not in table.columns
    assert table.loc[("b", "t0-s0")].isna().all()  # not run yet
    with pytest.raises(FileNotFoundError):
        read_metrics(["b"], ["t0-s0"], tmp_path)
