"""A data split fed as normalised batches (`Split`): held as uint8 images (`DeviceData`), on the
device or, when it does not fit there, in host memory through a DataLoader; and whole-split
prediction."""

from __future__ import annotations

import abc
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from alphaprune import distributed
from alphaprune.runtime import Runtime, widened


class Split(abc.ABC):
    """One split's labels (on the device) and how its uint8 images become model inputs:
    normalised per batch on the device, channels_last where the runtime trains so. Subclasses
    say where the images come from (`DeviceData`: a uint8 tensor; `alphaprune.streamed`: their
    files)."""

    def __init__(self, y: Tensor, mean, std, runtime: Runtime):
        dev = runtime.device
        self.y = y.to(dev, non_blocking=True)
        dtype = runtime.dtype
        self.mean = torch.tensor(mean, device=dev, dtype=dtype).view(1, -1, 1, 1)
        self.inv_std = 1 / torch.tensor(std, device=dev, dtype=dtype).view(1, -1, 1, 1)
        self.channels_last = runtime.channels_last
        self.workers = runtime.workers
        self.pin = runtime.cuda  # host batches are pinned for asynchronous copies to CUDA
        self.world = runtime.world  # the processes a run spans, each with its share (`order`)

    def __len__(self) -> int:
        return len(self.y)

    def normalise(self, x: Tensor) -> Tensor:
        x = x.to(self.mean.device, non_blocking=True).to(self.mean.dtype)
        x = (x - self.mean) * self.inv_std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def order(
        self, batch_size: int, generator: torch.Generator | None = None, shard: bool = False
    ) -> list[Tensor]:
        """The batches' indices, on the labels' device: shuffled, dropping the last incomplete
        batch, when `generator` is given (training); in order and complete otherwise.

        `shard`: this process's share of them when a run spans several (`self.world`), every
        process drawing the same order: in training its rows of each batch of `batch_size`
        (so the batch stays `batch_size` in all), otherwise its contiguous block of the split
        in batches of `batch_size`."""
        n, world = len(self), self.world
        if generator is None:
            order = torch.arange(n, device=self.y.device)
            if shard and world.distributed:
                order = order[world.rows(n)]
            stop = len(order)
        else:
            order = torch.randperm(n, device=generator.device, generator=generator)
            order = order.to(self.y.device)
            stop = n - n % batch_size if n >= batch_size else n
        chunks = [order[start : start + batch_size] for start in range(0, stop, batch_size)]
        if generator is not None and shard and world.distributed:
            chunks = [c[world.rows(len(c))] for c in chunks]
        return chunks

    @property
    @abc.abstractmethod
    def dataset(self) -> torch.utils.data.Dataset:
        """`dataset[indices]`: the uint8 images at `indices` (a tensor of them), as one tensor."""

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, shard: bool = False
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """(x, y, indices) on the device, in `order`, the images fetched by the DataLoader."""
        chunks = self.order(batch_size, generator, shard)
        for fetched, idx in zip(self._loader(chunks), chunks, strict=True):
            yield self.normalise(self.images(fetched)), self.y[idx], idx

    def images(self, fetched) -> Tensor:
        """The uint8 images of what the dataset fetched for a batch: itself, unless a subclass
        fetches something else (e.g. still-encoded files, to decode on the device)."""
        return fetched

    def examples(self, n: int) -> Tensor:
        """The first `n` images, as model inputs (e.g. to trace a model with)."""
        return self.normalise(self.images(self.dataset[torch.arange(min(n, len(self)))]))

    def _loader(self, chunks: list[Tensor]) -> Iterator:
        """`self.dataset[indices]` for each chunk of indices, fetched by DataLoader workers."""
        from torch.utils.data import DataLoader

        # One synchronisation per epoch on this path: the workers need the order on the host.
        host = torch.cat(chunks).cpu().split([len(c) for c in chunks]) if chunks else []
        yield from DataLoader(
            self.dataset,
            sampler=host,  # one whole batch of indices per fetch
            batch_size=None,
            num_workers=self.workers,
            pin_memory=self.pin,
        )


class DeviceData(Split):
    """One split as uint8 images, normalised per batch on the device.

    Resident (the fast path, airbench-style): the images live on the device and a batch is one
    gather. Otherwise they stay in host memory (pinned on CUDA) and a DataLoader with workers
    gathers each batch and copies it asynchronously. Labels always live on the device, and both
    paths draw the same shuffled order from the same generator, so they give the same batches.
    """

    def __init__(self, x: Tensor, y: Tensor, mean, std, runtime: Runtime, resident: bool = True):
        super().__init__(y, mean, std, runtime)
        self.resident = resident
        # Host placement keeps the images in ordinary memory: a gather from a pinned tensor
        # is not pinned anyway, and the DataLoader pins each batch it hands over.
        self.x = x.to(runtime.device, non_blocking=True) if resident else x

    @property
    def dataset(self) -> _Gather:
        return _Gather(self.x)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, shard: bool = False
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        if not self.resident:
            yield from super().batches(batch_size, generator, shard)
            return
        for idx in self.order(batch_size, generator, shard):
            yield self.normalise(self.x[idx]), self.y[idx], idx


class _Gather(torch.utils.data.Dataset):
    """dataset[indices] -> the images at `indices`, in one tensor gather (no per-example loop)."""

    def __init__(self, x: Tensor):
        self.x = x

    def __getitem__(self, idx: Tensor) -> Tensor:
        return self.x[idx]

    def __len__(self) -> int:
        return len(self.x)


@torch.no_grad()
def predict(model: nn.Module, data: Split, runtime: Runtime) -> Tensor:
    """The logits for the whole split, in order (float32; float64 in a float64 run). When a
    run spans several processes, each predicts its block of the split and every one gets all
    the logits."""
    was = model.training
    model.eval()
    world = data.world
    shard = world.distributed and len(data) >= world.size  # else every block must be non-empty
    with runtime.autocast():
        batches = data.batches(runtime.eval_batch_size, shard=shard)
        out = torch.cat([widened(model(x)) for x, _, _ in batches])
    model.train(was)
    return distributed.gather(world, out, len(data)) if shard else out


def accuracy(model: nn.Module, data: Split, runtime: Runtime) -> float:
    return (predict(model, data, runtime).argmax(1) == data.y).float().mean().item()
