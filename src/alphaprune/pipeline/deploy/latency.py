"""Latency of teacher and student where they run: onnxruntime and PyTorch eager on the CPU at a
latency batch and a throughput batch on a stated number of threads, and PyTorch on CUDA (timed
with CUDA events) at a latency batch and a large one.

`measure_grid` times every distinct architecture of a grid's teachers and students once, in
turns (`rounds` times, who goes first alternating), each figure the median of repeated forward
passes after a warm-up, each speedup the median over rounds of that round's teacher ÷ student
with its spread over rounds, and records the machine, the threads and the batches, and how busy
other processes kept the CPUs this process may run on meanwhile: timings taken beside a
training job measure the contention, not the models. The pipeline runs it in one job that holds
the machine alone (`alphaprune latency`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import statistics
import tempfile
import time
import timeit
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from alphaprune.pipeline.deploy import export
from alphaprune.pipeline.params.schema import LatencyConfig

# Before any timing, forward passes for half the time the timing takes (allocations, caches,
# lazy init), and at least three.
WARMUP_SHARE = 0.5
BLOCKS = 5  # timed blocks at least, however short `seconds`: the median is taken over them


def ort_latency_ms(
    path: str | Path, shape: tuple[int, ...], batch: int, threads: int, seconds: float = 1.0
) -> float:
    """Median milliseconds of one onnxruntime forward pass of `batch` inputs on `threads`
    threads, timed for at least `seconds` after a warm-up (see `_median_ms`)."""
    sess = export.session(path, threads)
    feed = {"input": np.random.default_rng(0).standard_normal((batch, *shape), dtype=np.float32)}
    return _median_ms(lambda: sess.run(None, feed), seconds, threads)


def eager_latency_ms(
    model: nn.Module, shape: tuple[int, ...], batch: int, threads: int, seconds: float = 1.0
) -> float:
    """The same for PyTorch eager on the CPU (the deployed form, no autograd)."""
    model, x = export.deployable(model), torch.randn(batch, *shape)
    with torch.inference_mode():
        return _median_ms(lambda: model(x), seconds, threads)


def cuda_latency_ms(
    model: nn.Module, shape: tuple[int, ...], batch: int, device: torch.device, seconds: float
) -> float:
    """Median milliseconds of one PyTorch forward pass of `batch` inputs on the CUDA `device`,
    each timed with a pair of CUDA events (launches included: at batch 1 they are the latency),
    over passes totalling at least `seconds`, after a warm-up."""
    model = export.deployable(model).to(device)
    x = torch.randn(batch, *shape, device=device)
    times: list[float] = []
    # events record on the current device's stream: make it `device`'s
    with torch.cuda.device(device), torch.inference_mode():
        _warm_up(lambda: model(x), seconds, sync=lambda: torch.cuda.synchronize(device))
        while sum(times) < seconds * 1e3 or len(times) < 5:
            start, end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            start.record()
            model(x)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def _warm_up(run, seconds: float, sync=lambda: None) -> float:
    """At least three passes and `WARMUP_SHARE` of `seconds`, then `sync`; the seconds a pass
    took."""
    start = time.perf_counter()
    until, passes = start + WARMUP_SHARE * seconds, 0
    while passes < 3 or time.perf_counter() < until:
        run()
        passes += 1
    sync()
    return (time.perf_counter() - start) / passes


def _median_ms(run, seconds: float, threads: int) -> float:
    """Median milliseconds of one call of `run` on `threads` torch threads. After a warm-up
    that also says how long a call takes, calls are timed in blocks of about a tenth of
    `seconds` each (the clock's resolution and the loop then cost nothing), until the blocks
    add up to `seconds` and number at least `BLOCKS` (stdlib timeit: garbage collection off).

    torch.utils.benchmark's autorange did the same but first searched for the block size by
    timing blocks 10x longer each time: about 4x `seconds` per figure, 24 figures a job."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        number = max(1, round(seconds / 10 / _warm_up(run, seconds)))
        timer, blocks = timeit.Timer(run), []
        while sum(blocks) < seconds or len(blocks) < BLOCKS:
            blocks.append(timer.timeit(number))
    finally:
        torch.set_num_threads(previous)
    return statistics.median(blocks) / number * 1e3


class OtherCpuUse:
    """How many of the CPUs this process may run on other processes kept busy, on average,
    while the `with` block ran (`cores`; None where /proc/stat is not there to say, i.e. not
    Linux). Busy time comes from /proc/stat, this process's own from `time.process_time`."""

    def __init__(self):
        self.cores: float | None = None

    def __enter__(self) -> OtherCpuUse:
        self._start = (_busy_seconds(), time.process_time(), time.monotonic())
        return self

    def __exit__(self, *exc) -> None:
        busy, own, wall = _busy_seconds(), time.process_time(), time.monotonic()
        if busy is None or self._start[0] is None or wall <= self._start[2]:
            return
        other = (busy - self._start[0]) - (own - self._start[1])
        self.cores = max(0.0, other / (wall - self._start[2]))


def _busy_seconds() -> float | None:
    """Seconds the CPUs in this process's affinity set spent busy since boot (None off Linux)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
        cpus = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (OSError, AttributeError):
        return None
    busy, seen = 0, 0
    for line in lines:
        name, *ticks = line.split()
        if name in cpus:
            t = [int(v) for v in ticks[:8]]  # user nice system idle iowait irq softirq steal
            busy += sum(t) - t[3] - t[4]
            seen += 1
    # a virtualised /proc/stat (some containers) may not name our CPUs: unknown, not idle
    return busy / os.sysconf("SC_CLK_TCK") if seen else None


def machine(device: torch.device) -> dict:
    """What the timings ran on: CPU model and the CPUs this process may use, the library
    versions, and the GPU when timing on CUDA."""
    import onnxruntime

    out = {
        "machine_cpu": _cpu_model(),
        "machine_cpus": (
            len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        ),
        "torch_version": torch.__version__,
        "onnxruntime_version": onnxruntime.__version__,
    }
    if device.type == "cuda":
        out["machine_gpu"] = torch.cuda.get_device_name(device)
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def architecture(model: nn.Module) -> str:
    """What decides how fast `model` runs, as a short hash: its deployed form's modules (name
    and class) and tensors (name, shape, dtype), not their values. Models that share it run the
    same computation and are timed once; a sparse student deploys dense, so it shares the
    teacher's (and its speedup is exactly 1)."""
    deployed = export.deployable(model)
    h = hashlib.sha256()
    for name, module in deployed.named_modules():
        h.update(f"m {name} {type(module).__qualname__}\n".encode())
    for name, t in deployed.state_dict().items():
        h.update(f"t {name} {tuple(t.shape)} {t.dtype}\n".encode())
    return h.hexdigest()[:12]


def measure_grid(
    models: Mapping[str, nn.Module],
    teacher_of: Mapping[str, str],
    shape: tuple[int, ...],
    cfg: LatencyConfig,
    device: torch.device | None = None,
    onnx: Mapping[str, str | Path] | None = None,
) -> dict[str, dict]:
    """Every student's latency and speedup against its teacher, each distinct architecture
    timed once (`architecture`): twins, and recipes that leave the same layers, share one
    timing. `models`: teachers and students by name; `teacher_of`: each student's teacher's
    name; `onnx`: ONNX files by model name (a model without one is exported to a temporary
    folder). In each of `cfg.rounds` rounds every architecture is timed in turn, the order
    reversed every other round (no fixed warm side); a speedup is the median over rounds of
    that round's teacher ms ÷ student ms, and its spread (`…_speedup_range`) the least and the
    greatest of them.

    The keys of each student's dict: ``{teacher,student}_{ort,eager,cuda}_{latency,throughput}
    _ms``, ``{ort,eager,cuda}_{latency,throughput}_speedup`` and ``…_speedup_range``; latency
    is at `cfg.batch`, throughput at `cfg.throughput_batch` on the CPU and `cfg.cuda_batch` on
    CUDA (CUDA only when `device` is; None: the CPU only); ``architecture``, the names it shares
    its timing with, and the conditions (machine, threads, batches, rounds, other processes'
    CPU use)."""
    device = device or torch.device("cpu")
    onnx = dict(onnx or {})
    arch = {name: architecture(m) for name, m in models.items()}
    first = {}  # architecture -> the model that stands for it
    for name in models:
        first.setdefault(arch[name], name)
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for a, name in first.items():
            given = next((onnx[n] for n in models if arch[n] == a and n in onnx), None)
            if given is None:
                given = Path(tmp) / f"{a}.onnx"
                export.export_onnx(models[name], shape, given)
            files[a] = given
        timers = {
            "ort": lambda a, b: ort_latency_ms(files[a], shape, b, cfg.threads, cfg.seconds),
            "eager": lambda a, b: eager_latency_ms(
                models[first[a]], shape, b, cfg.threads, cfg.seconds
            ),
        }
        batches = {"ort": cfg.throughput_batch, "eager": cfg.throughput_batch}
        if device.type == "cuda":
            timers["cuda"] = lambda a, b: cuda_latency_ms(
                models[first[a]], shape, b, device, cfg.seconds
            )
            batches["cuda"] = cfg.cuda_batch
        ms: dict[tuple[str, str], dict[str, list[float]]] = {}
        with OtherCpuUse() as other:
            for engine, timer in timers.items():
                for kind, batch in (("latency", cfg.batch), ("throughput", batches[engine])):
                    times = ms[engine, kind] = {a: [] for a in first}
                    for i in range(cfg.rounds):  # who goes first alternates
                        for a in list(first)[:: 1 if i % 2 == 0 else -1]:
                            times[a].append(timer(a, batch))
    conditions = {
        "latency_threads": cfg.threads,
        "latency_batch": cfg.batch,
        "throughput_batch": cfg.throughput_batch,
        **({"cuda_batch": cfg.cuda_batch} if device.type == "cuda" else {}),
        "latency_rounds": cfg.rounds,
        "latency_seconds": cfg.seconds,
        "other_cpu_use_cores": other.cores,
        "architectures_timed": len(first),
        **machine(device),
    }
    out = {}
    for student, teacher in teacher_of.items():
        s, t = arch[student], arch[teacher]
        row: dict = {}
        for (engine, kind), times in ms.items():
            row[f"teacher_{engine}_{kind}_ms"] = statistics.median(times[t])
            row[f"student_{engine}_{kind}_ms"] = statistics.median(times[s])
            ratios = [a / b for a, b in zip(times[t], times[s], strict=True)]
            row[f"{engine}_{kind}_speedup"] = statistics.median(ratios)
            row[f"{engine}_{kind}_speedup_range"] = [min(ratios), max(ratios)]
        shared = sorted(n for n in teacher_of if n != student and arch[n] == s)
        out[student] = {**row, "architecture": s, "timed_with": shared, **conditions}
    return out


def measure(
    teacher: nn.Module,
    student: nn.Module,
    student_onnx: str | Path,
    shape: tuple[int, ...],
    cfg: LatencyConfig,
    device: torch.device | None = None,
    teacher_onnx: str | Path | None = None,
) -> dict:
    """One student against its teacher (`measure_grid` of the pair). Without `teacher_onnx`
    (the teacher's ONNX file, as the pipeline's export_teacher stage writes it) the teacher is
    exported to a temporary folder."""
    onnx = {"student": student_onnx, **({"teacher": teacher_onnx} if teacher_onnx else {})}
    models = {"teacher": teacher, "student": student}
    return measure_grid(models, {"student": "teacher"}, shape, cfg, device, onnx)["student"]
