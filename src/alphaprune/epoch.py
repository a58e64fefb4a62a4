"""One epoch's work, for the fit loop (`alphaprune.fit`): training over the shuffled batches
(`train_epoch`, with what it trains with: `EpochInputs`), evaluation on a split, the teacher's
logits for the losses that need them (`TeacherTargets`), and α moving at every batch in batch
mode (`BatchAlpha`). Metrics accumulate in device tensors: no host synchronisation inside an
epoch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from alphaprune import blend, distributed, schedules
from alphaprune.batches import Split, predict
from alphaprune.fitspec import FitSpec, LossFn
from alphaprune.optim import params_of
from alphaprune.runtime import Runtime, widened


class BatchAlpha:
    """Batch mode: sets α before each training batch of α > 0 step `k` (one epoch), so that the
    schedule's steps share all the batches of the α > 0 epochs; the last batch of the epoch
    sets the step's own α. Writes the blends' α buffers only when the value changes."""

    def __init__(self, model: nn.Module, spec: FitSpec, k: int, n_train: int):
        self.model, self.anneal = model, spec.batch_anneal
        self.per_epoch = max(1, n_train // spec.batch_size)  # as DeviceData.batches, drop-last
        self.first = k * self.per_epoch
        self.total = (len(spec.alphas) - 1) * self.per_epoch
        self.current: float | None = None

    def __call__(self, i: int) -> None:
        alpha = schedules.alpha_at(self.anneal, self.first + i + 1, self.total)
        if alpha != self.current:
            blend.set_alpha(self.model, alpha)
            self.current = alpha


class TeacherTargets:
    """Teacher logits for losses that need them. Without augmentation the inputs never change,
    so the teacher runs once per split instead of once per step."""

    def __init__(self, teacher, train: Split, val: Split, runtime: Runtime, spec):
        if teacher is None:
            raise ValueError("this loss needs the teacher's logits, but no teacher was given")
        self.teacher = teacher.eval().requires_grad_(False).to(runtime.dtype)
        self.runtime = runtime
        self.val = predict(self.teacher, val, runtime)
        self.train = None if spec.augment.active else predict(self.teacher, train, runtime)

    @torch.no_grad()
    def __call__(self, x: Tensor, idx: Tensor) -> Tensor:
        if self.train is not None:
            return self.train[idx]
        with self.runtime.autocast():
            return widened(self.teacher(x))


@dataclass(frozen=True)
class EpochInputs:
    """What an epoch of one step trains with (all but the learning rate, which moves)."""

    net: nn.Module  # the model as called: compiled or not
    frozen: list[nn.Module]  # BatchNorm layers kept in eval mode
    data: Split
    opt: torch.optim.Optimizer
    spec: FitSpec
    generator: torch.Generator
    targets: TeacherTargets | None
    runtime: Runtime
    move: BatchAlpha | None  # batch mode: sets α before each batch


def train_epoch(run: EpochInputs, lr: Callable[[float], float]) -> dict:
    """One epoch over the shuffled training batches; `lr(fraction of the epoch done)`."""
    spec, opt = run.spec, run.opt
    run.net.train()
    for m in run.frozen:
        m.eval()
    dev = run.data.y.device
    loss_sum = torch.zeros((), device=dev, dtype=run.runtime.dtype)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    steps = max(1, len(run.data) // spec.batch_size)
    world = run.data.world
    whole = min(spec.batch_size, len(run.data))  # a batch, all processes' shares together
    part = (world.rows(whole), whole) if world.distributed else None
    for i, (x, y, idx) in enumerate(run.data.batches(spec.batch_size, run.generator, shard=True)):
        if spec.augment.active:
            x = spec.augment(x, run.generator, part)
        for group in opt.param_groups:
            group["lr"] = lr(i / steps)
        if run.move is not None:
            run.move(i)
        with run.runtime.autocast():
            logits = widened(run.net(x))
        t = run.targets(x, idx) if run.targets is not None else None
        loss = spec.loss(logits, y, t)
        if spec.layer_distill:
            term = blend.distill_loss(run.net)
            if term is not None:  # None once the blends have collapsed
                loss = loss + spec.layer_distill * term
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if spec.optimizer.grad_clip is not None:  # foreach kernels, no host sync
            torch.nn.utils.clip_grad_norm_(params_of(opt), spec.optimizer.grad_clip)
        opt.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
    correct = correct.to(loss_sum.dtype)  # the accuracy in the loss's dtype, however many runs
    if world.distributed:  # every process's examples
        seen_t = torch.tensor(seen, device=dev, dtype=loss_sum.dtype)
        totals = distributed.all_sum(world, torch.stack([loss_sum, correct, seen_t]))
        loss_sum, correct, seen = totals[0], totals[1], totals[2]
    return {"train_loss": loss_sum / seen, "train_acc": correct / seen}  # device tensors


@torch.no_grad()
def evaluate(model, data: Split, loss_fn: LossFn, teacher_logits, runtime) -> dict:
    """The loss and accuracy of `model` on `data` (a validation split)."""
    logits = predict(model, data, runtime)
    return {
        "val_loss": loss_fn(logits, data.y, teacher_logits).item(),
        "val_acc": (logits.argmax(1) == data.y).float().mean().item(),
    }
