"""Device choice: explicit names are used as given; with several GPUs, concurrent jobs claim
different ones (simulated here with lock files: no GPU needed), and a claim ends with its
process, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch

from alphaprune import devices

GPUS = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]

# A job: claim a GPU among GPUS, report it, and hold it until killed.
JOB = """
import sys, time
from pathlib import Path
from alphaprune import devices
index = devices.claim({gpus!r}, Path(sys.argv[1]), slots=int(sys.argv[2]))
print(index, flush=True)
time.sleep(60)
"""


def _job(folder, slots: int = 1, gpus=GPUS) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", JOB.format(gpus=gpus), str(folder), str(slots)],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, int(proc.stdout.readline())


def _end(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def test_explicit_device_is_used_as_given():
    assert devices.resolve_device("cpu") == torch.device("cpu")
    assert devices.resolve_device("cuda:1") == torch.device("cuda", 1)


def test_concurrent_jobs_get_different_gpus(tmp_path):
    first, a = _job(tmp_path)
    second, b = _job(tmp_path)
    try:
        assert {a, b} == {0, 1}  # two training jobs, two GPUs: neither shares GPU 0
        third, c = _job(tmp_path)
        assert c == 2
        _end(third)
    finally:
        _end(first)
        _end(second)


def test_a_killed_jobs_gpu_is_free_again(tmp_path):
    first, a = _job(tmp_path)
    _end(first)  # SIGKILL: no cleanup code runs, the OS drops the lock
    second, b = _job(tmp_path)
    _end(second)
    assert a == b == 0


def test_more_jobs_than_gpus_share_the_first_with_a_warning(tmp_path, caplog):
    jobs = [_job(tmp_path) for _ in GPUS]
    try:
        assert sorted(i for _, i in jobs) == [0, 1, 2]
        assert devices.claim(GPUS, tmp_path) == 0
        assert "all 3 GPUs are claimed by other alphaprune jobs (1 a GPU)" in caplog.text
    finally:
        for proc, _ in jobs:
            _end(proc)


def test_jobs_per_gpu_spread_over_the_gpus_then_share_them(tmp_path, caplog):
    gpus = GPUS[:2]
    jobs = [_job(tmp_path, slots=2, gpus=gpus) for _ in range(4)]
    try:
        # every GPU takes one job before any takes a second; then two each
        assert [i for _, i in jobs] == [0, 1, 0, 1]
        assert devices.claim(gpus, tmp_path, slots=2) == 0  # a fifth job: no slot left
        assert "all 2 GPUs are claimed by other alphaprune jobs (2 a GPU)" in caplog.text
        _end(jobs[3][0])  # GPU 1's second job ends (killed): its slot is free again
        jobs[3] = _job(tmp_path, slots=2, gpus=gpus)
        assert jobs[3][1] == 1
    finally:
        for proc, _ in jobs:
            _end(proc)


def test_one_slot_a_gpu_keeps_the_lock_files_of_earlier_releases(tmp_path):
    first, a = _job(tmp_path)  # jobs_per_gpu 1: the file a running older release would lock
    try:
        assert a == 0 and (tmp_path / "GPU-aaaa.lock").exists()
        assert not list(tmp_path.glob("*.1.lock"))
    finally:
        _end(first)


def test_auto_on_this_machine_is_resolved_once(monkeypatch):
    monkeypatch.setattr(devices, "_AUTO", [])
    first = devices.resolve_device("auto")
    assert devices.resolve_device("auto") == first  # one claim per process
    if not torch.cuda.is_available():
        assert first.type in ("cpu", "mps")


def test_a_run_of_several_processes_claims_as_many_different_gpus(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "_HELD", [])  # the claims end with the test
    other, taken = _job(tmp_path)  # another job holds GPU 0
    try:
        assert taken == 0
        assert devices.claim_several(GPUS, 2, tmp_path) == [1, 2]
    finally:
        _end(other)


def test_a_run_that_cannot_have_its_gpus_holds_none(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "_HELD", [])
    jobs = [_job(tmp_path) for _ in range(2)]
    try:
        with pytest.raises(devices.DeviceError, match=r"only 1 of the 3 GPUs have a slot free"):
            devices.claim_several(GPUS, 2, tmp_path)
        assert devices._HELD == []  # the one it could take is let go again
        _end(jobs.pop()[0])
        assert devices.claim_several(GPUS, 2, tmp_path) == [1, 2]
    finally:
        for proc, _ in jobs:
            _end(proc)


def test_the_processes_of_a_run_see_only_the_gpus_claimed_for_it(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "_HELD", [])
    monkeypatch.setenv("ALPHAPRUNE_GPU_LOCKS", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(devices, "_gpu_ids", lambda: GPUS)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,7")  # e.g. what a scheduler gave the job
    other, _ = _job(tmp_path)
    try:
        assert devices.visible_gpus(2) == "5,7"
        with pytest.raises(devices.DeviceError, match="shows only 3 GPUs"):
            devices.visible_gpus(4)
    finally:
        _end(other)
    # every GPU it sees is the run's: nothing to hide, but they are claimed all the same
    monkeypatch.setenv("ALPHAPRUNE_GPU_LOCKS", str(tmp_path / "other"))
    assert devices.visible_gpus(3) is None
    with pytest.raises(devices.DeviceError, match="only 0 of the 3 GPUs have a slot free"):
        devices.claim_several(GPUS, 1, tmp_path / "other")
