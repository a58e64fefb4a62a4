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
            assert got[f"{engine}_{kind}_speedup"] == pytest.approx(t / s)
    # throughput is the larger batch: it cannot take less time per call than batch 1 by much
    assert got["student_ort_throughput_ms"] > 0.5 * got["student_ort_latency_ms"]
    assert not any(k.startswith(("cuda_", "teacher_cuda", "student_cuda")) for k in got)
    assert (got["latency_threads"], got["latency_batch"], got["throughput_batch"]) == (1, 1, 8)
    assert got["latency_rounds"] == 2 and got["machine_cpus"] >= 1 and got["machine_cpu"]
    assert got["torch_version"] == torch.__version__ and got["onnxruntime_version"]
    assert got["other_cpu_use_cores"] is None or got["other_cpu_use_cores"] >= 0


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
    assert busy.cores is not None and busy.cores > 0.6  # the neighbour spun one core
    with latency.OtherCpuUse() as ours:
        end = time.perf_counter() + 0.6
        while time.perf_counter() < end:
            pass
    assert ours.cores is not None and ours.cores < 0.5  # our own core is not counted


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_latency_is_timed_with_events():
    _, student = _pair()
    ms = latency.cuda_latency_ms(student, SHAPE, 8, torch.device("cuda"), 0.05)
    assert 0 < ms < 1000
