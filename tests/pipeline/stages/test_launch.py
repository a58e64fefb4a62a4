"""One run across two processes (`runtime.processes: 2`): the command starts itself again under
torchrun, the processes train on halves of every batch (DDP over gloo, on the CPU), and the
student is the one a single process makes with the same global batch. A run killed outright
resumes from its checkpoint to the same bits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
import yaml

from alphaprune.pipeline.params.base import ConfigError
from alphaprune.pipeline.params.loader import resolve
from alphaprune.torchfiles import safe_load

pytestmark = pytest.mark.slow(seconds=75)
ALPHAPRUNE = [sys.executable, "-m", "alphaprune.pipeline.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # two processes, one core each
FLOAT64 = ("--set", "runtime.precision=float64")

# The frozen-teacher recipe (BatchNorm in eval mode: see `_trains_batchnorm` below) with every
# per-example random draw there is: crop, flip and noise on half the examples, and α moving at
# every batch.
RECIPE = {
    "augment": {"crop_flip": True, "crop_padding": 1, "noise_fraction": 0.5, "noise_std": 0.3},
    "advance": {"mode": "batch"},
    "epochs": 4,
    "finetune_epochs": 2,
}
# Two processes and one differ only in the order of float sums: each process sums the gradient
# of its half batch, and the halves are added. In float32 that is not a bound a test can hold on
# any CPU: oneDNN picks its conv algorithm by CPU and by batch shape (32 or 64 examples), and this
# run's students differed by 1e-7 (AVX-512 and SSE4.1 here), 9e-4 (AVX2 here) and 1e-4 (an
# AVX-512 + AMX Xeon). So the test trains in float64 (`runtime.precision`), where the kernels are
# ATen's own and each sum of n terms is off by at most n·1.1e-16 of its terms' magnitude: a
# weight's gradient sums at most 64 examples × 8 × 8 positions (4096 terms, 4.5e-13), and 72
# steps add at most 3e-11 to weights of order 1. FLOAT_ORDER is 30 times that. Measured here:
# 3.3e-16 (AVX-512), 3.5e-16 (AVX2), 4.2e-16 (SSE4.1). A real difference is far above it:
# BatchNorm normalising half batches (the last test) moves the weights by more than 1e-3.
FLOAT_ORDER = 1e-9


def _params(tmp_path, tiny_raw, **variant) -> str:
    raw = {**tiny_raw, "variants": {"v": {**RECIPE, **variant}}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def _prune(params, prepared_path, teacher, out, processes, *extra, check=True, **popen):
    """`alphaprune prune` of variant v in `processes` processes; `extra` arguments, `popen`:
    started and not waited for."""
    args = [*ALPHAPRUNE, "prune", "--params", params, "--set", f"runtime.processes={processes}"]
    args += [*extra, "--variant", "v", "--data", str(prepared_path), "--teacher", str(teacher)]
    args += ["--out", str(out), "--record", str(out / "record.json")]
    if popen:
        return subprocess.Popen(args, env=ENV, **popen)
    done = subprocess.run(args, env=ENV, capture_output=True, text=True, check=False)
    assert done.returncode == 0 or not check, done.stderr
    return done


def _weights(folder) -> dict[str, torch.Tensor]:
    """A student's weights as its file holds them (float64 from a float64 run: loading would
    round them to float32, which could put 1e-13 apart on two sides of a float32 rounding)."""
    blob = safe_load(folder / "student.pt", "model file", format=None, version=None)
    return blob["state_dict"]


def _students(a, b) -> float:
    """The largest difference between two students' weights (same layers, same shapes)."""
    sa, sb = _weights(a), _weights(b)
    assert sa.keys() == sb.keys()
    return max((sa[k].double() - sb[k].double()).abs().max().item() for k in sa)


def _history(folder) -> pd.DataFrame:
    return pd.read_csv(folder / "history.csv").drop(columns="seconds")


def test_two_processes_make_the_student_one_process_makes(
    tiny_raw, prepared_path, teacher_dir, tmp_path
):
    params = _params(tmp_path, tiny_raw)
    teacher = teacher_dir / "model.pt"
    _prune(params, prepared_path, teacher, tmp_path / "one", 1, *FLOAT64)
    two = _prune(params, prepared_path, teacher, tmp_path / "two", 2, *FLOAT64)
    assert "one run across 2 processes (gloo)" in two.stderr
    # Only the main process logs: each epoch's line once.
    assert two.stderr.count("v: epoch 4 ") == 1
    assert next(iter(_weights(tmp_path / "two").values())).dtype == torch.float64
    # The same batches, augmentation draws, α at every batch, and gradients averaged: the same
    # weights but for the order of float sums (FLOAT_ORDER).
    assert _students(tmp_path / "one", tmp_path / "two") < FLOAT_ORDER
    a, b = _history(tmp_path / "one"), _history(tmp_path / "two")
    # What is counted, or set by the schedule, is exactly equal; so are the accuracies (an
    # argmax would flip only for two logits within ~1e-12 of each other). The losses, gathered
    # over both processes, are float64 sums in another order.
    exact = ["epoch", "step", "alpha", "lr", "train_acc", "val_acc"]
    pd.testing.assert_frame_equal(a[exact], b[exact], check_exact=True)
    pd.testing.assert_frame_equal(a, b, rtol=FLOAT_ORDER, atol=0)
    assert (tmp_path / "two" / "record.json").exists()


def test_a_killed_two_process_prune_resumes(tiny_raw, prepared_path, teacher_dir, tmp_path):
    # even: one epoch an α step, so a checkpoint follows the first epoch and the run has 7
    params = _params(
        tmp_path,
        tiny_raw,
        advance={"mode": "even"},
        schedule={"kind": "linear", "steps": 5},
        epochs=7,
    )
    _prune(params, prepared_path, teacher_dir / "model.pt", tmp_path / "whole", 2)
    cut = tmp_path / "cut"
    first = _prune(
        params,
        prepared_path,
        teacher_dir / "model.pt",
        cut,
        2,
        start_new_session=True,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not (cut / "checkpoint" / "last.pt").exists():
            assert first.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the launcher, torchrun and both processes
        first.wait()
    assert not (cut / "student.pt").exists()
    done = _prune(params, prepared_path, teacher_dir / "model.pt", cut, 2)
    assert "resumed from" in done.stderr
    history = _history(cut)
    assert history["epoch"].tolist() == list(range(1, 8))
    # The same two processes on the same machine, resumed from the bits they saved: the same
    # kernels in the same order, so the very same numbers (DESIGN.md: bit for bit on the CPU).
    pd.testing.assert_frame_equal(_history(tmp_path / "whole"), history, check_exact=True)
    assert _students(tmp_path / "whole", cut) == 0


def test_a_batch_that_does_not_split_over_the_processes_is_refused(tiny_raw):
    raw = {**tiny_raw, "runtime": {"device": "cpu", "processes": 3}}
    with pytest.raises(ConfigError) as info:
        resolve(raw, "tiny")
    # a check across two sections: the message names both keys, after the file (no empty path)
    assert str(info.value).startswith(
        "tiny: teacher.batch_size: 64 does not split evenly over runtime.processes 3"
    )


def test_the_launchers_error_names_the_failure(tiny_raw, prepared_path, tmp_path):
    params = _params(tmp_path, tiny_raw)
    done = _prune(params, prepared_path, tmp_path / "none", tmp_path / "o", 2, check=False)
    assert done.returncode == 2
    assert "alphaprune prune: error: the run's 2 processes failed" in done.stderr
    assert "none" in done.stderr  # the processes' own error, above it


def test_batchnorm_in_training_mode_is_what_differs(tiny_raw, prepared_path, teacher_dir, tmp_path):
    """Training the BatchNorm layers (`trainable: student`), each process normalises with its
    half of the batch: the students differ, by far more than float error (in float64, where
    that is below FLOAT_ORDER), unless the statistics are synchronised
    (`runtime.sync_batchnorm`, GPUs only; refused on the CPU)."""
    params = _params(tmp_path, tiny_raw, trainable="student", epochs=2, finetune_epochs=1)
    teacher = teacher_dir / "model.pt"
    _prune(params, prepared_path, teacher, tmp_path / "one", 1, *FLOAT64)
    _prune(params, prepared_path, teacher, tmp_path / "two", 2, *FLOAT64)
    assert _students(tmp_path / "one", tmp_path / "two") > 1e-3
    synced = ("--set", "runtime.sync_batchnorm=true")
    done = _prune(params, prepared_path, teacher, tmp_path / "s", 2, *synced, check=False)
    assert done.returncode == 2 and "synchronises BatchNorm on GPUs only" in done.stderr
    assert "one run in 2 processes" not in done.stderr  # refused before starting them


@pytest.mark.parametrize(
    ("job", "device"),
    [
        ({}, "cpu"),  # torchrun on this machine, the CPU asked for
        ({}, "auto"),  # torchrun on this machine, which has no CUDA here
        ({"NumTasks": "2", "TRES": "cpu=2,mem=1G,node=1"}, "auto"),  # srun: a job without GPUs
        ({"NumTasks": "2", "TRES": "cpu=2,gres/gpu=2"}, "cpu"),  # srun: the CPU asked for
    ],
)
def test_the_launcher_refuses_sync_batchnorm_off_cuda_before_it_starts(monkeypatch, job, device):
    """Before torchrun or srun starts a process (each would fail the same way after its
    imports); the processes are never started."""
    from alphaprune.errors import UserError
    from alphaprune.pipeline.params.schema import RuntimeConfig
    from alphaprune.pipeline.stages import launch

    if device == "auto" and not job and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: auto would run on it")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setattr(launch, "_slurm_job", lambda job_id: job)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail(f"started {a[0]}"))
    runtime = RuntimeConfig(processes=2, sync_batchnorm=True, device=device)
    with pytest.raises(UserError, match="synchronises BatchNorm on GPUs only"):
        launch.relaunched(["prune"], runtime)
