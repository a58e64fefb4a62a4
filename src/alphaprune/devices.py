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

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)
_HELD: list = []  # open lock files: closing one would release its GPU
_AUTO: list = []  # what `auto` resolved to: one claim per process


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
    folder = folder or lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for slot, (index, ident) in ((k, d) for k in range(slots) for d in enumerate(ids)):
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
    log.warning(
        "all %d GPUs are claimed by other alphaprune jobs (%d a GPU); sharing GPU 0 (run "
        "snakemake with --resources gpu=<number of GPUs × runtime.jobs_per_gpu>)",
        len(ids),
        slots,
    )
    return 0


def _gpu_ids() -> list[str]:
    import torch

    return [str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())]


def resolve_device(name: str = "auto", jobs_per_gpu: int = 1) -> torch.device:
    """`auto`: a free CUDA GPU (claimed, see above; `jobs_per_gpu` slots each), then MPS, then
    CPU; otherwise a torch device string such as `cuda:1`, used as given."""
    import torch  # here, so that claiming a GPU (above) stays cheap to import

    if name != "auto":
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
