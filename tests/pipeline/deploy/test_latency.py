"""Timing teacher and student: every setting is timed for both in turns, the speedup is their
ratio, the conditions are recorded, and other processes' use of the CPUs is seen."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alphaprune import blend
from alphaprune.budget.allocator import allocate
from alphaprune.models import build_model
from alphaprune.pipeline.deploy import export, latency
from alphaprune.pipeline.params.schema import LatencyConfig
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
    export.export_onnx(model, SHAPE, path)
    for ms in (
        latency.ort_latency_ms(path, SHAPE, batch=4, threads=1, seconds=0.05),
        latency.eager_latency_ms(model, SHAPE, batch=4, threads=1, seconds=0.05),
    ):
        assert 0 < ms < 1000


def test_a_timing_lasts_about_its_seconds_plus_the_warm_up():
    """`seconds` bounds the cost of a figure: the block size comes from the warm-up, with no
    search for it (torch.utils.benchmark's autorange took about four times `seconds`)."""
    calls = 0

    def run():  # a 2 ms call, whatever else the machine does (sleep overshoots, never short)
        nonlocal calls
        calls += 1
        time.sleep(0.002)

    start = time.perf_counter()
    ms = latency._median_ms(run, seconds=0.1, threads=1)
    took = time.perf_counter() - start
    assert 2.0 <= ms < 3.5
    assert took < 0.1 * (1 + latency.WARMUP_SHARE) + 0.1
    assert calls >= 0.1 / 0.0035  # the timed calls alone filled `seconds`


def test_a_slow_call_is_still_timed_in_several_blocks():
    calls = 0

    def run():
        nonlocal calls
        calls += 1
        time.sleep(0.02)

    assert latency._median_ms(run, seconds=0.01, threads=1) >= 20
    assert calls >= 3 + latency.BLOCKS  # the warm-up's three, then a block per call


def test_measure_times_both_models_in_every_cpu_setting_and_states_the_conditions(tmp_path):
    teacher, student = _pair()
    path = tmp_path / "student.onnx"
    export.export_onnx(student, SHAPE, path)
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
    assert got["latency_rounds"] == 2 and got["latency_seconds"] == FAST.seconds
    assert got["machine_cpus"] >= 1 and got["machine_cpu"]
    assert got["torch_version"] == torch.__version__ and got["onnxruntime_version"]
    assert isinstance(got["other_cpu_use_cores"], float if sys.platform == "linux" else type(None))


def test_a_teacher_onnx_file_given_is_timed_not_exported_again(tmp_path, monkeypatch):
    teacher, student = _pair()
    paths = {who: tmp_path / f"{who}.onnx" for who in ("teacher", "student")}
    export.export_onnx(teacher, SHAPE, paths["teacher"])
    export.export_onnx(student, SHAPE, paths["student"])
    timed = []
    monkeypatch.setattr(export, "export_onnx", lambda *a: pytest.fail("exported again"))
    monkeypatch.setattr(latency, "ort_latency_ms", lambda p, *_: timed.append(p) or 1.0)
    cfg = LatencyConfig(seconds=0.01, rounds=1, throughput_batch=8)
    latency.measure(teacher, student, paths["student"], SHAPE, cfg, teacher_onnx=paths["teacher"])
    assert set(timed) == set(paths.values())


def test_rounds_alternate_who_goes_first_and_a_speedup_is_the_median_round(tmp_path, monkeypatch):
    teacher, student = _pair()
    path = tmp_path / "student.onnx"
    export.export_onnx(student, SHAPE, path)
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


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (/proc/<pid>/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_seconds() -> float:
    """CPU seconds all processes spent on this process's CPUs (/proc/stat), read here
    independently of the code under test."""
    cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    busy = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name in cpus:
            t = [int(v) for v in ticks[:8]]
            busy += sum(t) - t[3] - t[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


# Both checks hold whatever else the machine runs meanwhile (the suite runs in parallel): what a
# known neighbour used is a floor of what is seen, and our own spinning is left out of it.
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat (Linux)")
def test_other_cpu_use_sees_a_busy_neighbour():
    spin = "import time\nend = time.time() + 1.5\nwhile time.time() < end: pass"
    neighbour = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.2)  # let it start
        used, start = _process_cpu_seconds(neighbour.pid), time.monotonic()
        with latency.OtherCpuUse() as busy:
            time.sleep(0.8)
        used = _process_cpu_seconds(neighbour.pid) - used
        share = used / (time.monotonic() - start)  # cores the neighbour alone kept busy
    finally:
        neighbour.wait()
    assert share > 0.3, f"the neighbour hardly ran ({share:.2f} of a core): the test is moot"
    assert busy.cores is not None and busy.cores >= share - 0.1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat (Linux)")
def test_other_cpu_use_leaves_our_own_time_out():
    machine, own, start = _machine_busy_seconds(), time.process_time(), time.monotonic()
    with latency.OtherCpuUse() as ours:
        # spin for 0.6 s of our own CPU time, however busy the machine is (up to 20 s of wall)
        end = time.monotonic() + 20
        while time.process_time() - own < 0.6 and time.monotonic() < end:
            pass
    wall = time.monotonic() - start
    machine, own = _machine_busy_seconds() - machine, time.process_time() - own
    assert own > 0.5  # we did spin
    others = (machine - own) / wall  # what every other process used meanwhile
    assert ours.cores is not None and abs(ours.cores - others) < 0.15  # counted with ours: +0.6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_latency_is_timed_with_events():
    _, student = _pair()
    ms = latency.cuda_latency_ms(student, SHAPE, 8, torch.device("cuda"), 0.05)
    assert 0 < ms < 1000


def test_the_grid_times_each_architecture_once_and_twins_share_it(monkeypatch):
    """Two teachers of one architecture, two students of the same plan (twins: other weights,
    the same layers), one sparse student (deployed dense: the teacher's architecture) and one
    of another plan: three architectures, each timed once per setting and round; a student's
    speedup is its teacher's round ÷ its own, and a sparse one's exactly 1."""
    torch.manual_seed(0)
    t0 = build_model("cnn", num_classes=10, in_channels=1, image_size=8).eval()
    t1 = build_model("cnn", num_classes=10, in_channels=1, image_size=8).eval()
    x = torch.randn(2, *SHAPE)

    def student(teacher, kind, amount=0.65):
        s = make_student(teacher, allocate(teacher, kind, amount, x))
        blend.set_alpha(s, 0.0)
        return blend.collapse(s).eval()

    models = {
        "t0": t0,
        "t1": t1,
        "a/t0-s0": student(t0, "pointwise"),
        "a/t1-s0": student(t1, "pointwise"),  # the twin of a/t0-s0 on another teacher
        "d/t0-s0": student(t0, "sparse"),
        "b/t0-s0": student(t0, "lowrank"),
    }
    teacher_of = {name: f"t{name[3]}" for name in models if "/" in name}
    arch = {name: latency.architecture(m) for name, m in models.items()}
    assert arch["t0"] == arch["t1"] == arch["d/t0-s0"]
    assert arch["a/t0-s0"] == arch["a/t1-s0"] != arch["b/t0-s0"] != arch["t0"]
    ms = {arch["t0"]: 12.0, arch["a/t0-s0"]: 4.0, arch["b/t0-s0"]: 6.0}
    timed = []

    def fake(model_or_path, _shape, batch, *_):
        a = (
            model_or_path.stem
            if isinstance(model_or_path, Path)
            else latency.architecture(model_or_path)
        )
        timed.append((a, batch))
        return ms[a] * (1 + 0.1 * sum(1 for t in timed if t == (a, batch)))  # drifts up

    monkeypatch.setattr(latency, "ort_latency_ms", fake)
    monkeypatch.setattr(latency, "eager_latency_ms", fake)
    cfg = LatencyConfig(rounds=3, throughput_batch=8)
    got = latency.measure_grid(models, teacher_of, SHAPE, cfg)
    # 2 engines x 2 batches x 3 rounds x 3 architectures
    assert len(timed) == 2 * 2 * 3 * 3 and len(set(timed)) == 3 * 2
    assert got["d/t0-s0"]["ort_latency_speedup"] == 1.0  # the teacher against itself
    assert got["d/t0-s0"]["ort_latency_speedup_range"] == [1.0, 1.0]
    for name in ("a/t0-s0", "a/t1-s0"):
        assert got[name]["ort_latency_speedup"] == pytest.approx(3.0)  # same drift both sides
        assert got[name]["architecture"] == arch["a/t0-s0"]
    assert got["a/t0-s0"]["timed_with"] == ["a/t1-s0"]
    assert got["b/t0-s0"]["eager_throughput_speedup"] == pytest.approx(2.0)
    assert all(g["architectures_timed"] == 3 for g in got.values())
