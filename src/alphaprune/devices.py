"""Which device a process trains on.

`runtime.device` names one explicitly (`cpu`, `cuda:1`, `mps`), or is `auto`: CUDA, then MPS,
then the CPU. With several visible GPUs, `auto` *claims* one that no other alphaprune process
holds: an exclusive `flock` on a lock file named after the GPU's UUID, kept for the life of the
process and released by the OS when it ends, however it ends (SIGKILL included). So
`snakemake --cores all --resources gpu=N` runs N training jobs at once, each on its own GPU,
instead of N jobs on GPU 0. With `runtime.jobs_per_gpu: K` each GPU has K such slots (lock
files), taken GPU by GPU before any GPU takes a second job, so `--resources gpu=<GPUs × K>`
runs K small jobs on every GPU. Under SLURM each job sees only its own GPUs
(CUDA_VISIBLE_DEVICES) and the claim is trivially its first one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from alphaprune.errors import UserError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
_HELD: list = []  # open lock files: closing one would release its GPU
_AUTO: list = []  # what `auto` resolved to: one claim per process


class DeviceError(UserError, RuntimeError):
    """The GPUs a run needs are not there, or not free."""


def lock_dir() -> Path:
    """Where GPU claims live: $ALPHAPRUNE_GPU_LOCKS, else a per-user folder in the temp dir,
    shared by all of that user's jobs on the machine. Several users sharing GPUs should point
    $ALPHAPRUNE_GPU_LOCKS at one world-writable folder."""
    default = Path(tempfile.gettempdir()) / f"alphaprune-gpu-locks-{os.getuid()}"
    return Path(os.environ.get("ALPHAPRUNE_GPU_LOCKS", default))


def claim(ids: list[str], folder: Path | None = None, slots: int = 1) -> int:
    """Index in `ids` of a device with one of its `slots` free, that slot now held by this
    process: the first free slot of each device in turn, then the second of each, and so on, so
    that jobs spread over the devices before any device takes two. If every slot is claimed
    (more jobs than GPUs × slots), share the first device, with a warning."""
    index = _take(ids, folder or lock_dir(), slots)
    if index is not None:
        return index
    log.warning(
        "all %d GPUs are claimed by other alphaprune jobs (%d a GPU); sharing GPU 0 (run "
        "snakemake with --resources gpu=<number of GPUs × runtime.jobs_per_gpu>)",
        len(ids),
        slots,
    )
    return 0


def claim_several(ids: list[str], n: int, folder: Path | None = None, slots: int = 1) -> list[int]:
    """Indices in `ids` of `n` different devices, a slot of each now held by this process, as
    `claim` picks them: for a run of `n` processes, one a device. Fails, holding none, if fewer
    than `n` devices have a slot free (a process of its own on each is what DDP needs)."""
    taken: list[int] = []
    while len(taken) < n:
        index = _take(ids, folder or lock_dir(), slots, skip=taken)
        if index is None:
            for handle in _HELD[len(_HELD) - len(taken) :]:
                handle.close()
            del _HELD[len(_HELD) - len(taken) :]
            raise DeviceError(
                f"runtime.processes {n}: only {len(taken)} of the {len(ids)} GPUs have a slot "
                "free (other alphaprune jobs hold the rest); run fewer jobs at once"
            )
        taken.append(index)
    return taken


def _take(ids: list[str], folder: Path, slots: int, skip: list[int] = ()) -> int | None:
    """Claim the first free slot (see `claim`) of a device not in `skip`; None if none is."""
    folder.mkdir(parents=True, exist_ok=True)
    for slot, (index, ident) in ((k, d) for k in range(slots) for d in enumerate(ids)):
        if index in skip:
            continue
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", ident) + (f".{slot}" if slot else "")
        handle = open(folder / f"{name}.lock", "a")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")  # who holds it, for a curious human
        handle.flush()
        _HELD.append(handle)
        return index
    return None


def visible_gpus(n: int, jobs_per_gpu: int = 1) -> str | None:
    """CUDA_VISIBLE_DEVICES for a run of `n` processes on this machine, one a GPU: `n` GPUs
    claimed (see `claim_several`) for as long as this process lives. None when there is no
    CUDA, or when every visible GPU is the run's (claimed all the same, so that other jobs
    keep off them)."""
    import torch

    if not torch.cuda.is_available():
        return None
    ids = _gpu_ids()
    if len(ids) < n:
        raise DeviceError(f"runtime.processes {n}: this machine shows only {len(ids)} GPUs")
    taken = claim_several(ids, n, slots=jobs_per_gpu)
    if len(ids) == n:
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = visible.split(",") if visible else [str(i) for i in range(len(ids))]
    return ",".join(names[i] for i in taken)


def _gpu_ids() -> list[str]:
    import torch

    return [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]


def resolve_device(
    name: str = "auto", jobs_per_gpu: int = 1, local_rank: int | None = None
) -> torch.device:
    """`auto`: a free CUDA GPU (claimed, see above; `jobs_per_gpu` slots each), then MPS, then
    CPU; otherwise a torch device string such as `cuda:1`, used as given. `local_rank`: this
    process is that one of a run's processes on this machine, and takes that visible GPU
    (for `auto` and any `cuda` name: the launcher claimed them, see `visible_gpus`)."""
    import torch  # here, so that claiming a GPU (above) stays cheap to import

    cuda = (name == "auto" or name.startswith("cuda")) and torch.cuda.is_available()
    if local_rank is not None and cuda:
        # A task that SLURM bound to its own GPU sees only that one.
        device = torch.device("cuda", local_rank if torch.cuda.device_count() > 1 else 0)
    elif name != "auto":
        device = torch.device(name)
    else:
        if not _AUTO:
            _AUTO.append(_auto(jobs_per_gpu))
        device = _AUTO[0]
    if device.type == "cuda" and device.index is not None and torch.cuda.is_available():
        # The current device is what un-indexed calls use (synchronize, torch.utils.benchmark):
        # without this they would all wait on GPU 0.
        torch.cuda.set_device(device)
    return device


def _auto(jobs_per_gpu: int) -> torch.device:
    import torch

    if torch.cuda.is_available():
        ids = _gpu_ids()
        index = claim(ids, slots=jobs_per_gpu) if len(ids) > 1 else 0
        log.info("training on cuda:%d (%s)", index, torch.cuda.get_device_name(index))
        return torch.device("cuda", index)
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
