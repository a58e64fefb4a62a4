"""The pipeline on a real SLURM cluster, through Snakemake's SLURM executor and the project's
profile (workflow/profiles/slurm): a single-node cluster (munged, slurmctld, slurmd) is started
on this machine, the tiny configuration runs with every job submitted to it, each training job
is one run of two processes (DDP: two tasks and two GPUs, started with srun), students are timed
on a node they hold alone (--exclusive), and a second run has nothing to do.

It needs root and Debian's slurm-wlm and munge (installed here with apt-get when missing), so it
is marked `slurm`, left out of `make test`, and run by `make test-slurm` (CI runs both). The
node advertises two fake GPUs (/dev/null and /dev/zero as device files) so that GPU requests are
scheduled as they would be on a GPU node; the jobs themselves train on the CPU."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from pipeline_helpers import BIN, REPO, TINY, make_project, run

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CONF_DIR = Path("/etc/slurm")
MARK = "# written by alphaprune's tests/test_slurm.py"


def _skip_reason() -> str | None:
    if os.name != "posix" or os.geteuid() != 0:
        return "starting a SLURM cluster needs root"
    if not shutil.which("slurmctld") and not shutil.which("apt-get"):
        return "slurm-wlm is not installed and apt-get is not available to install it"
    conf = CONF_DIR / "slurm.conf"
    if conf.exists() and MARK not in conf.read_text():
        return f"{conf} belongs to a real SLURM installation; not replacing it"
    return None


def _install() -> None:
    if shutil.which("slurmctld") and shutil.which("munged"):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge"],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:  # offline, or no Debian archive: not this test's failure
            pytest.skip(
                f"could not install slurm-wlm and munge ({' '.join(cmd[:2])}: "
                f"{done.stderr.strip().splitlines()[-1:] or done.returncode})"
            )


def _config(state: Path) -> tuple[str, str]:
    host = socket.gethostname().split(".")[0]
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 * 8 // 10
    slurm = f"""{MARK}
ClusterName=alphaprune-ci
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=86400
ReturnToService=2
GresTypes=gpu
NodeName={host} CPUs={os.cpu_count()} RealMemory={mem_mb} Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    gres = "".join(f"NodeName={host} Name=gpu File={dev}\n" for dev in ("/dev/null", "/dev/zero"))
    gres = f"{MARK}\n{gres}"
    return slurm, gres


def _munge_works() -> bool:
    try:
        encoded = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        decoded = subprocess.run(["unmunge"], input=encoded.stdout, capture_output=True, timeout=10)
        return encoded.returncode == 0 and decoded.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _wait_until_idle(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
        if state.stdout.strip() == "idle":
            return
        if "drain" in state.stdout or "inval" in state.stdout:
            subprocess.run(
                [
                    "scontrol",
                    "update",
                    f"nodename={socket.gethostname().split('.')[0]}",
                    "state=resume",
                ],
                capture_output=True,
            )
        time.sleep(1)
    raise AssertionError(f"the SLURM node never became idle: {state.stdout} {state.stderr}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node SLURM cluster on this machine; stopped afterwards by the process ids started."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    _install()
    state = tmp_path_factory.mktemp("slurm")
    for sub in ("ctld", "d"):
        (state / sub).mkdir()
    slurm, gres = _config(state)
    CONF_DIR.mkdir(exist_ok=True)
    (CONF_DIR / "slurm.conf").write_text(slurm)
    (CONF_DIR / "gres.conf").write_text(gres)
    started: list[subprocess.Popen] = []

    def daemon(*cmd: str) -> None:  # its output goes to a file beside the cluster's state
        with open(state / f"{cmd[0]}.out", "w") as out:
            started.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT))

    try:
        if not _munge_works():
            Path("/run/munge").mkdir(parents=True, exist_ok=True)
            daemon("munged", "--force", "-F")
            time.sleep(1)
        daemon("slurmctld", "-D")
        time.sleep(1)
        daemon("slurmd", "-D")
        _wait_until_idle()
        yield state
    finally:
        for proc in reversed(started):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for name in ("slurm.conf", "gres.conf"):
            (CONF_DIR / name).unlink(missing_ok=True)


# Small resources: the CI node has 2 cores and a few GB. A --set-resources on the command line
# replaces the profile's block, so it is rebuilt from the profile with only the sizes shrunk:
# everything else it asks for per rule (GPUs, --exclusive) is what is tested.
PROFILE = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
SIZES = {"cpus_per_task": 1, "mem_mb": 1000, "runtime": 10}
SMALL = [
    "--default-resources",
    "mem_mb=500",
    "runtime=10",
    "cpus_per_task=1",
    "--set-resources",
    *(
        f"{rule}:{key}={value}"
        for rule, asked in PROFILE["set-resources"].items()
        for key, value in (asked | SIZES).items()
    ),
]
PLUGIN = [
    "--slurm-no-account",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "2",
]


# Two variants are enough to show every rule on SLURM, and keep the test short. Each training
# job is one run of two processes (runtime.processes): a SLURM job of two tasks and two GPUs,
# whose command starts a process a task with srun; they train over gloo on the node's CPUs.
GRID = {
    **TINY,
    "variants": {v: TINY["variants"][v] for v in ("a", "b-2")},
    "runtime": {**TINY["runtime"], "processes": 2},
}


def test_the_pipeline_runs_on_slurm(cluster, tmp_path):
    root = make_project(tmp_path / "p", GRID)
    args = [BIN / "snakemake", "--profile", "workflow/profiles/slurm", *PLUGIN, *SMALL]
    out = run(args, root)
    log = out.stdout + out.stderr
    submitted = dict(re.findall(r"submitted with SLURM jobid (\d+) \(log: \S*rule_(\w+)", log))
    print("SLURM job ids:", ", ".join(f"{j} ({rule})" for j, rule in submitted.items()))
    rules = sorted(submitted.values())
    assert rules == sorted(
        ["prepare", "pretrain", "export_teacher", "latency", "plots", "report"]
        + ["prune", "evaluate", "export"] * len(GRID["variants"])
    ), log
    for job, rule in submitted.items():
        shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True)
        assert "JobState=COMPLETED" in shown.stdout, shown.stdout
        if rule in ("pretrain", "prune"):  # a task and a GPU for each of the run's processes
            assert "NumTasks=2" in shown.stdout and "gres:gpu:2" in shown.stdout, shown.stdout
        if rule == "latency":
            assert (
                "gres:gpu:1" in shown.stdout
            )  # students are timed on the kind of node they train on
        # students are timed with the node to themselves; other jobs share it
        exclusive = "OverSubscribe=NO" in shown.stdout
        assert exclusive == (rule == "latency"), shown.stdout
    for stage in ("pretrain/t0", "prune/a/t0-s0", "prune/b-2/t0-s0"):
        text = (root / "logs" / f"{stage}.log").read_text()
        assert "one run in 2 processes: srun --kill-on-bad-exit=1 --ntasks=2" in text, text
        assert "--gpus-per-task=1" in text, text  # each process its own GPU
        assert "one run across 2 processes (gloo)" in text, text
    for v in GRID["variants"]:
        assert (root / "results" / "variants" / v / "t0-s0" / "metrics.json").exists()
        assert (root / "results" / "plots" / f"training_{v}.png").exists()
    assert (root / "results" / "report.md").exists()
    again = run([BIN / "snakemake", "-n", "--profile", "workflow/profiles/slurm", *PLUGIN], root)
    assert "Nothing to be done" in again.stdout + again.stderr
    # Jobs ran (and re-read the Snakefile) on the node; the submit host recorded them in DVC.
    assert "Recorded in DVC's lock" in log
    assert json.loads(run([BIN / "dvc", "status", "--json"], root).stdout) == {}
