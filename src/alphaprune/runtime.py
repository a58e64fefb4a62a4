"""Where and how training runs: the device, the precision (`auto`: bf16 autocast on CUDA,
float32 elsewhere; or float32 or float64 everywhere), the memory layout, whether to compile,
whether the data lives on the device, and the processes one run spans (`Runtime`)."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from alphaprune.world import World

# What a run asking for `sync_batchnorm` off CUDA is told (by the fit, and by the launcher before
# it starts the processes).
SYNC_BATCHNORM_NEEDS_CUDA = (
    "runtime.sync_batchnorm: PyTorch synchronises BatchNorm on GPUs only; set it to "
    "false on the CPU (each process then normalises with its share of the batch)"
)


def widened(t: Tensor) -> Tensor:
    """`t` in float32 if it is in a narrower float (bf16 under autocast), else as it is: losses
    and metrics are summed in float32, or in float64 in a float64 run."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    compile: bool = False
    # auto: bf16 autocast on CUDA, float32 elsewhere. float32: no autocast anywhere. float64:
    # weights, batches and losses in float64, for numerical checks (two processes against one
    # agree to float64's rounding, not float32's: tests/pipeline/stages/test_launch.py); slow.
    precision: str = "auto"
    eval_batch_size: int = 1024
    data_placement: str = "auto"  # auto | device | host (see DeviceData)
    workers: int = 4  # DataLoader workers when the data stays in host memory
    jobs_per_gpu: int = 1  # training jobs that may share one GPU (see devices.claim)
    processes: int = 1  # processes (one a GPU) one training run spans (see alphaprune.distributed)
    sync_batchnorm: bool = False  # BatchNorm statistics over the whole batch, not a process's share
    world: World = World()  # this process among the run's

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def channels_last(self) -> bool:
        """Whether batches and conv weights are channels_last (NHWC). On CUDA, cuDNN's fast
        kernels are NHWC; on the CPU, oneDNN's are too: a training step on 1 thread (teacher,
        pointwise and lowrank blends) took 15-22% less time for ResNet-20, 8-16% for the digits
        CNN (NCHW max-pooling alone was 13x slower), 11-16% for ResNet-56, 21-34% for
        MobileNet-V2, and 9-20% more for VGG-16 (benchmarks/channels_last.py). Not on MPS,
        where it is untested."""
        return self.device.type in ("cuda", "cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the weights and normalised batches (autocast aside)."""
        return torch.float64 if self.precision == "float64" else torch.float32

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` on the device, in the run's dtype (in place)."""
        return model.to(device=self.device, dtype=self.dtype)

    def autocast(self):
        # bf16 needs no loss scaling; on the CPU, float32 keeps the results exactly reproducible.
        if self.cuda and self.precision == "auto":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def data_fits(self, nbytes: int) -> bool:
        """Whether `nbytes` of uint8 images should live on the device: `auto` keeps them there
        when they take at most a quarter of the free device memory (the model, activations
        and optimizer need the rest)."""
        if self.data_placement != "auto":
            return self.data_placement == "device"
        if not self.cuda:
            return True  # CPU (the host is the device) and MPS (unified memory)
        free, _ = torch.cuda.mem_get_info(self.device)
        return nbytes <= free // 4
