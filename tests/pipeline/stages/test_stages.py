"""The prune stage killed for real: `alphaprune prune` in a subprocess gets SIGKILL at random
moments (and once in the middle of writing a checkpoint); every file it leaves is complete, and
running the same command again ends with exactly the uninterrupted run's results."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import alphaprune
from alphaprune.loading import load_model
from conftest import TINY

pytestmark = pytest.mark.slow(seconds=75)

# Writes each checkpoint's first half, pauses (a slow disk), then the rest: a kill in the
# pause is a kill in the middle of a checkpoint write.
SLOW_CHECKPOINT_WRITES = """
import io, sys, time, torch
real_save = torch.save
def slow_save(obj, path, *args, **kwargs):
    if "checkpoint" not in str(path):
        return real_save(obj, path, *args, **kwargs)
    buffer = io.BytesIO()
    real_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2]); f.flush()
        time.sleep(1.0)
        f.write(data[len(data) // 2 :])
torch.save = slow_save
from alphaprune.pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


PLAIN = "import sys\nfrom alphaprune.pipeline.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.fixture(scope="module")
def prune_cmd(tmp_path_factory, prepared_path, teacher_dir):
    params = tmp_path_factory.mktemp("kill") / "params.yaml"
    params.write_text(yaml.safe_dump(TINY))

    def cmd(out: Path) -> list[str]:
        return [
            "prune",
            "--params",
            str(params),
            "--variant",
            "base",
            "--data",
            str(prepared_path),
            "--teacher",
            str(teacher_dir / "model.pt"),
            "--out",
            str(out),
        ]

    return cmd


@pytest.fixture(scope="module")
def whole(prune_cmd, tmp_path_factory) -> tuple[Path, float]:
    """An uninterrupted run, and its wall time."""
    out = tmp_path_factory.mktemp("whole")
    start = time.perf_counter()
    _run(prune_cmd(out))
    return out, time.perf_counter() - start


def _start(args: list[str], slow_checkpoints: bool = False, env=None) -> subprocess.Popen:
    code = SLOW_CHECKPOINT_WRITES if slow_checkpoints else PLAIN
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def _run(args: list[str], env=None) -> str:
    """Run to completion; its log (stderr)."""
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN, *args], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def _wait_for(condition, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None and time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


def _assert_every_file_complete(out: Path) -> None:
    """What a kill leaves: whole files (and perhaps a hidden temporary), never a torn one."""
    for path in out.rglob("*"):
        if path.is_dir() or (path.name.startswith(".") and path.name.endswith(".tmp")):
            continue
        if path.suffix == ".pt":
            if path.name == "student.pt":
                load_model(path)
            else:
                torch.load(path, weights_only=True)
        elif path.suffix == ".csv":
            assert len(pd.read_csv(path)) > 0


def _results(out: Path):
    history = pd.read_csv(out / "history.csv").drop(columns="seconds")
    state = load_model(out / "student.pt")[0].state_dict()
    return history, state


def _assert_same_results(a: Path, b: Path) -> None:
    (ha, sa), (hb, sb) = _results(a), _results(b)
    pd.testing.assert_frame_equal(ha, hb, check_exact=True)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sigkill_at_random_moments_then_rerun_gives_the_same_results(prune_cmd, whole, tmp_path):
    """Trial 0 is killed at a random moment of start-up (nothing to resume: the rerun starts
    over); trials 1 and 2 at a random moment after the first α-step checkpoint (the rerun
    resumes)."""
    reference, _ = whole
    rng = random.Random(0)
    for trial in range(3):
        out = tmp_path / f"cut{trial}"
        proc = _start(prune_cmd(out))
        if trial == 0:
            time.sleep(rng.uniform(0.1, 1.0))
        else:
            _wait_for((out / "checkpoint" / "last.pt").exists, proc)
            time.sleep(rng.uniform(0.0, 0.5))
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        _assert_every_file_complete(out)
        resumable = (out / "checkpoint" / "last.pt").exists()
        assert resumable == (trial > 0)
        log = _run(prune_cmd(out))
        assert ("resumed from" in log) == resumable
        _assert_same_results(reference, out)
        assert not list(out.rglob(".*.tmp"))


def test_sigkill_during_a_checkpoint_write(prune_cmd, whole, tmp_path):
    out = tmp_path / "cut"
    proc = _start(prune_cmd(out), slow_checkpoints=True)
    ckpt = out / "checkpoint"
    deadline = time.monotonic() + 120
    # Wait for the second checkpoint write to begin: a complete first one is then in place.
    seen = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.stat().st_size > 0 for p in ckpt.glob(".last.pt.*.tmp")):
            seen += 1
            if seen == 2:
                break
            while list(ckpt.glob(".last.pt.*.tmp")):
                time.sleep(0.01)
        time.sleep(0.01)
    assert seen == 2 and proc.poll() is None, "never caught a checkpoint being written"
    before = torch.load(ckpt / "last.pt", weights_only=True)["next_step"]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(ckpt.glob(".last.pt.*.tmp"))  # the torn write is a temporary ...
    state = torch.load(ckpt / "last.pt", weights_only=True)  # ... and last.pt is the old one
    assert state["next_step"] == before == 1
    assert not (out / "student.pt").exists()
    _run(prune_cmd(out))
    _assert_same_results(whole[0], out)
    assert not list(out.rglob(".*.tmp"))


def test_a_killed_prune_resumes_after_an_edit_of_code_it_does_not_run(prune_cmd, whole, tmp_path):
    """The checkpoint's fingerprint covers the code the prune stage runs, not the package: after
    an edit of the plots it resumes; after an edit of the fit loop it starts over (that edit
    reruns the stage, and resuming would keep the old code's α > 0 phase)."""
    src = tmp_path / "src"  # a copy of the package to edit, imported instead of the installed one
    shutil.copytree(
        Path(alphaprune.__file__).parent,
        src / "alphaprune",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {**os.environ, "PYTHONPATH": str(src)}
    for edited, resumes in (("pipeline/report/plots.py", True), ("fit.py", False)):
        assert (src / "alphaprune" / edited).is_file(), edited  # an edit of a file that is there
        out = tmp_path / f"after-{edited.replace('/', '-')}"
        proc = _start(prune_cmd(out), env=env)
        _wait_for((out / "checkpoint" / "last.pt").exists, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        with (src / "alphaprune" / edited).open("a") as f:
            f.write("# an edit\n")
        log = _run(prune_cmd(out), env=env)
        assert ("resumed from" in log) == resumes, log
        assert ("belongs to another configuration" in log) == (not resumes), log
        _assert_same_results(whole[0], out)  # a comment changes no result either way


def test_the_history_grows_while_a_prune_runs(prune_cmd, tmp_path):
    """What a notebook, `tail -f` or `dvc plots show` sees during a run: history.csv with a row
    per finished epoch (rewritten at most once a second), growing, and always whole."""
    out, epochs = tmp_path / "live", 60
    longer = ["--set", f"prune.epochs={epochs}", "--set", "prune.finetune_epochs=10"]
    proc = _start(prune_cmd(out) + longer)
    lengths = set()
    while proc.poll() is None:
        if (out / "history.csv").exists():
            seen = pd.read_csv(out / "history.csv")["epoch"].tolist()
            assert seen == list(range(1, len(seen) + 1))
            lengths.add(len(seen))
        time.sleep(0.01)
    assert proc.returncode == 0
    assert len({n for n in lengths if n < epochs}) >= 2, lengths  # seen growing mid-run
    assert len(pd.read_csv(out / "history.csv")) == epochs
    assert len(pd.read_csv(out / "steps.csv")) > 1


def test_the_record_holds_the_params_the_run_started_with(prune_cmd, tmp_path):
    """params.yaml edited while a prune runs: the student was trained on the old recipe, and
    its record must say so (both tools then see the edit as a change to rerun)."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(TINY))
    cmd = prune_cmd(tmp_path / "out")
    cmd[cmd.index("--params") + 1] = str(params)
    record = tmp_path / "record.json"
    proc = _start([*cmd, "--record", str(record)])
    _wait_for((tmp_path / "out" / "checkpoint" / "last.pt").exists, proc)
    edited = {**TINY, "prune": {**TINY["prune"], "optimizer": {"lr": 0.5}}}
    params.write_text(yaml.safe_dump(edited))
    assert proc.wait(timeout=300) == 0
    assert json.loads(record.read_text())["prune"] == TINY["prune"]
