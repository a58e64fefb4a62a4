"""A training command's processes: with `runtime.processes` N > 1, `alphaprune pretrain` or
`prune` runs itself again under torchrun (`python -m torch.distributed.run --standalone
--nproc-per-node N`), one process a GPU, and waits for them. On a machine with more GPUs than N,
it first claims N free ones (`devices.visible_gpus`) and shows the processes only those, so that
several such runs share a machine as single-GPU jobs do. A command already started as one of a
run's processes (by torchrun, or by srun with a task a GPU) does not launch again."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys

from alphaprune import devices, distributed
from alphaprune.errors import UserError
from alphaprune.pipeline.config import RuntimeConfig

log = logging.getLogger(__name__)


def relaunched(argv: list[str], runtime: RuntimeConfig) -> bool:
    """Run the command line `argv` (`alphaprune`'s arguments) as `runtime.processes`
    processes under torchrun if it asks for several and this is not one of them already; True
    when it did (and they all succeeded), False when this process is to do the work."""
    n = runtime.processes
    if n == 1 or distributed.environment().distributed:
        return False
    env = dict(os.environ)
    # torchrun's default is 1 thread a process: right for GPUs, slow for a CPU run.
    env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // n)))
    if runtime.device in ("auto", "cuda"):
        visible = devices.visible_gpus(n, runtime.jobs_per_gpu)
        if visible is not None:
            env["CUDA_VISIBLE_DEVICES"] = visible
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={n}",
        "-m",
        "alphaprune.pipeline.cli",
        *argv,
    ]
    log.info("one run in %d processes: %s", n, shlex.join(command))
    done = subprocess.run(command, env=env, check=False)
    if done.returncode:
        raise UserError(
            f"the run's {n} processes failed (torchrun's exit status {done.returncode}); "
            "the first process's error is above"
        )
    return True
