"""One run across several processes, one a GPU: joining them, and the few collective
operations the fit loop needs (who this process is among them is `alphaprune.world`).

A run is split by *data*, never by recipe: every process holds the same model, draws the same
random numbers from the same generator (so the batch order, the augmentation draws and the α
schedule agree without being sent anywhere), and trains on its own contiguous share of each
global batch of `batch_size` examples. DDP averages the gradients, so a step is the step one
process takes on the whole batch, and the result does not depend on the number of processes
(BatchNorm aside: in training mode each process normalises with its own share's statistics
unless `runtime.sync_batchnorm` makes them the whole batch's, which PyTorch does on GPUs only).
Evaluation splits a set into one contiguous block a process and gathers the logits, so every
process sees the same metrics and takes the same early-stopping decisions.

The processes are started by torchrun (`torch.distributed.run`), which sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT; `join` reads them. Under srun with one task a process
started by `alphaprune.pipeline.stages.launch` (no torchrun), SLURM's own variables give the same:
SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID.
"""

from __future__ import annotations

import atexit
import logging

import torch
from torch import Tensor

from alphaprune.world import World, environment

log = logging.getLogger(__name__)


def all_sum(world: World, t: Tensor) -> Tensor:
    """`t` summed over the processes, in place (and returned)."""
    if world.distributed:
        torch.distributed.all_reduce(t)
    return t


def gather(world: World, t: Tensor, n: int) -> Tensor:
    """The rows of `n` items that the processes hold as their `world.rows(n)`, in order: `t` is
    this process's share (padded, since a collective moves equal shapes)."""
    if not world.distributed:
        return t
    most = world.rows(n, 0).stop
    padded = t.new_zeros((most, *t.shape[1:]))
    padded[: len(t)] = t
    parts = [torch.empty_like(padded) for _ in range(world.size)]
    torch.distributed.all_gather(parts, padded)
    lengths = [len(range(n)[world.rows(n, r)]) for r in range(world.size)]
    return torch.cat([p[:k] for p, k in zip(parts, lengths, strict=True)])


def join(device: torch.device) -> World:
    """Join the run's process group (once; NCCL on CUDA, gloo on the CPU) if this process is
    one of several, and return its place. The processes other than the main one log only
    errors, so that a run's log holds each line once."""
    world = environment()
    if not world.distributed:
        return world
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(
            backend,
            init_method="env://",
            rank=world.rank,
            world_size=world.size,
            device_id=device if device.type == "cuda" else None,
        )
        atexit.register(leave)
        if world.main:
            log.info("one run across %d processes (%s)", world.size, backend)
    if not world.main:
        logging.getLogger("alphaprune").setLevel(logging.ERROR)
    return world


def wrap(model: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """`model` as the fit loop calls it in training: under DDP, which averages the gradients
    of what trains over the processes, when there are several (itself otherwise). The wrapper
    shares `model`'s parameters; wrap again after the trainable set or the modules change."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def same_as_main(world: World, value, device: torch.device | None = None):
    """`value` as the main process holds it, in every process (itself where there is one): for
    what each process decides alone but all must share, such as a plan chosen by comparing float
    sums, which a near-tie can break another way on another device. Pickled; tensors in it
    should be on the CPU (a CUDA tensor would arrive on the sender's device). `device`: where
    the collective stages its bytes (the process's GPU under NCCL)."""
    if not world.distributed:
        return value
    box = [value if world.main else None]
    torch.distributed.broadcast_object_list(box, src=0, device=device)
    return box[0]


def share_buffers(model: torch.nn.Module, world: World) -> None:
    """Every process's buffers (BatchNorm's running statistics) made the main process's: DDP
    sends them at each training forward, so after an epoch's last batch each process holds its
    own update until this."""
    if world.distributed:
        for buffer in model.buffers():
            torch.distributed.broadcast(buffer, 0)


def leave() -> None:
    """Leave the process group (at the end of a process's run)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
