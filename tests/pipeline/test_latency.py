"""Timing teacher and student: every setting is timed for both in turns, the speedup is their
ratio, the conditions are recorded, and other processes' use of the CPUs is seen."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from alphaprune import blend
from alphaprune.budget import allocate
from alphaprune.models import build_model
from alphaprune.pipeline import deploy, latency
from alphaprune.pipeline.config import LatencyConfig
from alphaprune.student import make_student

pytest.importorskip("onnxruntime", reason="onnxruntime is a dependency of the pipeline")

SHAPE = (1, 8, 8)
FAST = LatencyConfig(seconds=0.01, rounds=2, throughput_batch=8)


def _pair():
    torch.manual_seed(0)
    teacher = build_model("cnn", num_classes=10, in_channels=1, image_size=8).eval()
    student = make_student(teacher, allocate(teacher, "pointwise", 0.65, torch.randn(2, *SHAPE)))
    blend.set_alpha(student, 0.0)
    return teacher, blend.collapse(student).eval()


def test_latencies_are_positive_milliseconds(tmp_path):
    _, model = _pair()
    path = tmp_path / "m.onnx"
    deploy.export_onnx(model, SHAPE, path)
    for ms in (
        latency.ort_latency_ms(path, SHAPE, batch=4, threads=1, seconds=0.05),
        latency.eager_latency_ms(model, SHAPE, batch=4, threads=1, seconds=0.05),
    ):
        assert 0 < ms < 1000


def test_measure_times_both_models_in_every_cpu_setting_and_states_the_conditions(tmp_path):
    teacher, student = _pair()
    path = tmp_path / "student.onnx"
    deploy.export_onnx(student, SHAPE, path)
    got = latency.measure(teacher, student, path, SHAPE, FAST)
    for engine in ("ort", "eager"):
        for kind in ("latency", "throughput"):
            t, s = got[f"teacher_{engine}_{kind}_ms"], got[f"student_{engine}_{kind}_ms"]
            assert 0 < t < 1000 and 0 < s < 1000
            # the median round's ratio (see below): near the ratio of the medians
            assert got[f"{engine}_{kind}_speedup"] == pytest.approx(t / s, rel=0.5)
    # throughput is the larger batch: it cannot take less time per call than batch 1 by much
    assert got["student_ort_throughput_ms"] > 0.5 * got["student_ort_latency_ms"]
    assert not any(k.startswith(("cuda_", "teacher_cuda", "student_cuda")) for k in got)
    assert (got["latency_threads"], got["latency_batch"], got["throughput_batch"]) == (1, 1, 8)
    assert got["latency_rounds"] == 2 and got["machine_cpus"] >= 1 and got["machine_cpu"]
    assert got["torch_version"] == torch.__version__ and got["onnxruntime_version"]
    assert isinstance(got["other_cpu_use_cores"], float if sys.platform == "linux" else type(None))


def test_rounds_alternate_who_goes_first_and_a_speedup_is_the_median_round(tmp_path, monkeypatch):
    teacher, student = _pair()
    path = tmp_path / "student.onnx"
    deploy.export_onnx(student, SHAPE, path)
    times = {"teacher": [9.0, 10.0, 30.0], "student": [3.0, 10.0, 5.0]}  # ratios 3, 1, 6
    calls: list[tuple[str, str, int]] = []

    def fake(engine, who, batch):
        calls.append((engine, who, batch))
        n = sum(1 for c in calls if c[:3] == (engine, who, batch))
        return times[who][n - 1]

    monkeypatch.setattr(
        latency, "ort_latency_ms", lambda p, _s, b, *_: fake("ort", "s" if p == path else "t", b)
    )
    monkeypatch.setattr(
        latency,
        "eager_latency_ms",
        lambda m, _s, b, *_: fake("eager", "t" if m is teacher else "s", b),
    )
    times = {"t": times["teacher"], "s": times["student"]}
    got = latency.measure(teacher, student, path, SHAPE, LatencyConfig(rounds=3))
    for engine in ("ort", "eager"):
        order = [who for e, who, b in calls if e == engine and b == 1]
        assert order == ["t", "s", "s", "t", "t", "s"]  # the first one alternates
        for kind in ("latency", "throughput"):
            assert got[f"teacher_{engine}_{kind}_ms"] == 10.0  # medians of each model's times
            assert got[f"student_{engine}_{kind}_ms"] == 5.0
            assert got[f"{engine}_{kind}_speedup"] == 3.0  # the median round, not 10 / 5


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat (Linux)")
def test_other_cpu_use_sees_a_busy_neighbour_and_not_ourselves():
    spin = "import time\nend = time.time() + 1.0\nwhile time.time() < end: pass"
    neighbour = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.1)  # let it start
        with latency.OtherCpuUse() as busy:
            time.sleep(0.6)
    finally:
        neighbour.wait()
    with latency.OtherCpuUse() as idle:  # what the rest of the machine does anyway
        time.sleep(0.6)
    assert busy.cores is not None and busy.cores > idle.cores + 0.6  # the neighbour spun a core
    with latency.OtherCpuUse() as ours:
        end = time.perf_counter() + 0.6
        while time.perf_counter() < end:
            pass
    assert ours.cores is not None and ours.cores < idle.cores + 0.5  # our own core is not counted


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_latency_is_timed_with_events():
    _, student = _pair()
    ms = latency.cuda_latency_ms(student, SHAPE, 8, torch.device("cuda"), 0.05)
    assert 0 < ms < 1000
