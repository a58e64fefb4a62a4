"""A training command's processes: with `runtime.processes` N > 1, `alphaprune pretrain` or
`prune` runs itself again as N processes, one a GPU, and waits for them.

- In a SLURM job of N tasks (the SLURM profile asks for them: see workflow/rules/common.smk),
  `srun` starts one process a task, on as many nodes as the job holds; they meet at the job's
  first node (MASTER_ADDR, MASTER_PORT) and take their places from SLURM's variables.
- Elsewhere torchrun does, on this machine (`python -m torch.distributed.run --standalone
  --nproc-per-node N`). With more GPUs than N, N free ones are claimed first
  (`devices.visible_gpus`) and the processes see only those, so that several such runs share a
  machine as single-GPU jobs do.

A command already started as one of a run's processes does not launch again."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys

import torch

from alphaprune import devices, world
from alphaprune.errors import UserError
from alphaprune.pipeline.params.schema import RuntimeConfig
from alphaprune.runtime import SYNC_BATCHNORM_NEEDS_CUDA

log = logging.getLogger(__name__)
CLI = [sys.executable, "-m", "alphaprune.pipeline.cli"]


def relaunched(argv: list[str], runtime: RuntimeConfig) -> bool:
    """Run the command line `argv` (`alphaprune`'s arguments) as `runtime.processes`
    processes if it asks for several and this is not one of them already; True when it did
    (and they all succeeded), False when this process is to do the work."""
    n = runtime.processes
    if n == 1 or world.environment().distributed:
        return False
    env = dict(os.environ)
    job = _slurm_job(env.get("SLURM_JOB_ID"))
    if job.get("NumTasks") == str(n):
        if runtime.sync_batchnorm and (runtime.device == "cpu" or not _with_gpus(job)):
            raise UserError(SYNC_BATCHNORM_NEEDS_CUDA)  # now, not from each task srun starts
        command = _srun(env, job, argv)
    else:
        command = _torchrun(env, n, runtime, argv)
    log.info("one run in %d processes: %s", n, shlex.join(command))
    done = subprocess.run(command, env=env, check=False)
    if done.returncode:
        raise UserError(
            f"the run's {n} processes failed ({command[0]}'s exit status {done.returncode}); "
            "the first process's error is above"
        )
    return True


def _slurm_job(job_id: str | None) -> dict[str, str]:
    """The SLURM job `job_id` as `scontrol show job` tells it (NumTasks, NodeList, CPUs/Task,
    TresPerTask, ...); empty outside one. Asked of SLURM rather than read from the environment:
    the SLURM executor gives a job's command only the job's id."""
    if not job_id:
        return {}
    shown = subprocess.run(
        ["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True
    )
    return dict(f.split("=", 1) for f in shown.stdout.split() if "=" in f)


def _srun(env: dict, job: dict[str, str], argv: list[str]) -> list[str]:
    """srun, one process a task of this job (its GPU its own); where they meet is set in
    `env`: the job's first node."""
    hosts = subprocess.run(
        ["scontrol", "show", "hostnames", job["NodeList"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    env["MASTER_ADDR"] = hosts[0]
    env[world.SRUN_MARK] = "1"  # these tasks are one run's processes
    for inherited in ("SLURM_NTASKS_PER_GPU", "SLURM_NTASKS_PER_TRES"):  # vs --gpus-per-task
        env.pop(inherited, None)
    env.setdefault("MASTER_PORT", str(20000 + int(job["JobId"]) % 20000))
    cpus = job.get("CPUs/Task", "1")
    env.setdefault("OMP_NUM_THREADS", cpus)
    srun = [
        "srun",
        "--kill-on-bad-exit=1",
        f"--ntasks={job['NumTasks']}",
        f"--cpus-per-task={cpus}",
    ]
    if _with_gpus(job):
        srun.append("--gpus-per-task=1")
    return [*srun, *CLI, *argv]


def _with_gpus(job: dict[str, str]) -> bool:
    """Whether the SLURM job was given GPUs."""
    return "gpu" in job.get("TresPerJob", "") + job.get("TresPerTask", "") + job.get("TRES", "")


def _torchrun(env: dict, n: int, runtime: RuntimeConfig, argv: list[str]) -> list[str]:
    """torchrun on this machine, its GPUs claimed (see the module) and shown in `env`."""
    cuda = runtime.device == "auto" or runtime.device.startswith("cuda")
    if runtime.sync_batchnorm and not (cuda and torch.cuda.is_available()):
        raise UserError(SYNC_BATCHNORM_NEEDS_CUDA)  # now, not from each process it would start
    if runtime.device in ("auto", "cuda"):
        visible = devices.visible_gpus(n, runtime.jobs_per_gpu)
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
    # torchrun's default is 1 thread a process: right for GPUs, slow for a CPU run.
    env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // n)))
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*run, f"--nproc-per-node={n}", "-m", "alphaprune.pipeline.cli", *argv]
