"""The fit loop: one loop for the teacher and for the prune phase.

A run is a sequence of *steps*, one per α (the teacher has one step with no α). A step with α > 0
trains until the monitored validation metric has not improved for `patience` epochs (at least
`min_epochs`, at most `max_epochs`), or for the fixed number of epochs of `step_epochs`; the
last step runs every epoch left of the budget. The lr (`lr_schedule`) is constant while α > 0
and a cosine to zero over the last step (restart), or one cosine over all the epochs (cosine).
If the budget for α > 0 runs out first, the remaining α > 0 steps
are skipped: α drops to 0 there, and the step table shows the α that was reached. In batch mode
each α > 0 step is one epoch over which α moves on at every batch (`batch_anneal`), ending at
the step's α. At α = 0 the blends are collapsed, so fine-tuning trains the student itself.

GPU habits: the data lives on the device as uint8 and is normalised per batch; augmentation is
batched tensor ops; metrics accumulate in device tensors and are read once per epoch, so there
is no host synchronisation inside an epoch. bf16 autocast on CUDA; channels_last on CUDA and on
the CPU (`Runtime.channels_last`).

A run may span several processes (`runtime.world`, see `alphaprune.world`; the collectives are
`alphaprune.distributed`): each trains on its share of every batch under DDP, evaluation is
gathered, and only the main process calls `on_epoch` and `on_update` and writes the checkpoint;
everything else runs in every process.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from alphaprune import blend, distributed, norms
from alphaprune import checkpoint as checkpoints
from alphaprune.batches import Split
from alphaprune.epoch import BatchAlpha, EpochInputs, TeacherTargets, evaluate, train_epoch
from alphaprune.errors import UserError
from alphaprune.fitspec import FitSpec
from alphaprune.optim import lr_schedule, make_optimizer, rebuilt, train_also
from alphaprune.runtime import SYNC_BATCHNORM_NEEDS_CUDA, Runtime

log = logging.getLogger(__name__)


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    steps: list[dict] = field(default_factory=list)  # one row per α step
    seconds: float = 0.0


# -------------------------------------------------------------------------------------- fit
StepHook = Callable[[nn.Module], dict]


def fit(
    model: nn.Module,
    train: Split,
    val: Split,
    spec: FitSpec,
    runtime: Runtime,
    generator: torch.Generator,
    *,
    teacher: nn.Module | None = None,
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_update: Callable[[FitResult], None] | None = None,
    on_step: StepHook | None = None,
    narrow: Callable[[nn.Module], None] | None = None,
) -> FitResult:
    """Train `model` through `spec`'s α steps; resume from `checkpoint` if it holds a
    completed step of the same configuration, and write one there after every step.
    `on_epoch` gets each epoch's history row; `on_update` the whole result so far, after every
    epoch and α step and on resuming (e.g. to rewrite the history files as they grow);
    `on_step` measures the model at the end of each step (e.g. its clean training accuracy),
    its values added to the step's row with the seconds it took (`on_step_seconds`).
    `narrow` makes the collapsed student physically smaller (in place; `branch: channels`):
    the optimizer is rebuilt on what trains, the parameters it keeps keeping their state."""
    _device_layout(model, runtime)
    _sync_batchnorm(model, runtime)
    main = runtime.world.main  # the main process alone reports and writes
    if not main:
        on_epoch = on_update = None
    has_blends = any(True for _ in blend.blends(model))
    params = blend.set_trainable(model, spec.trainable) if has_blends else list(model.parameters())
    opt = make_optimizer(params, spec.optimizer)
    blend.set_distill(model, spec.layer_distill > 0)
    result, first_step, epoch = _resume(checkpoint, spec, model, opt, generator, on_update)
    targets = TeacherTargets(teacher, train, val, runtime, spec) if spec.needs_teacher else None
    start = time.perf_counter() - result.seconds
    net = _training_net(model, runtime)
    run = _Run(model, train, val, spec, runtime, generator, narrow, opt, net, targets)
    for k, alpha in enumerate(spec.alphas):
        epochs = step_budget(spec, k, epoch)
        if k < first_step or epochs is None:
            continue  # done before a resume, or the α > 0 budget is spent: α drops to 0
        final = k == len(spec.alphas) - 1
        inputs, begin = run.enter_step(k, alpha)
        monitor = _Plateau(spec.advance.monitor, spec.advance.patience)
        first_epoch = epoch
        for e in range(epochs[1]):
            row = run.epoch(inputs, k, alpha, final, first_epoch, e, epochs[1])
            epoch = row["epoch"]
            result.history.append(row)
            if on_epoch:
                on_epoch(row)
            if on_update:
                on_update(result)
            if monitor.update(row) and not final and e + 1 >= epochs[0]:
                break
        step = _step_row(k, alpha, result.history[first_epoch:epoch], monitor, begin)
        result.steps.append(step | _measure(on_step, model))
        result.seconds = time.perf_counter() - start
        if on_update:
            on_update(result)
        if main and checkpoint is not None and not final:
            checkpoints.save(
                checkpoint, spec.fingerprint, k + 1, epoch, model, run.opt, generator, result
            )
    return result


@dataclass
class _Run:
    """What a fit's steps share and change: the model as trained (`net`: under DDP, compiled),
    its optimizer, and the teacher's targets."""

    model: nn.Module
    train: Split
    val: Split
    spec: FitSpec
    runtime: Runtime
    generator: torch.Generator
    narrow: Callable[[nn.Module], None] | None
    opt: torch.optim.Optimizer  # rebuilt when the student is narrowed
    net: nn.Module  # made again for the collapsed student
    targets: TeacherTargets | None

    @property
    def has_blends(self) -> bool:
        return any(True for _ in blend.blends(self.model))

    def enter_step(self, k: int, alpha: float | None) -> tuple[EpochInputs, dict | None]:
        """Step `k` at `alpha` begun: α set; at α = 0 the blends collapsed (and the student
        narrowed, the BatchNorm statistics re-estimated, as asked). Returns what its epochs
        train with, and the validation metrics where it starts (α > 0 steps)."""
        model, spec, runtime = self.model, self.spec, self.runtime
        has_blends, trainable = self.has_blends, spec.trainable
        if alpha is not None:
            blend.set_alpha(model, alpha)
        if alpha == 0 and has_blends:
            trainable = spec.finetune_trainable or spec.trainable  # before the collapse drops
            train_also(self.opt, blend.set_trainable(model, trainable))  # branch from original
            blend.collapse(model)  # exact at α = 0, and the student trains faster
            if self.narrow is not None:
                self.narrow(model)
                self.opt = rebuilt(self.opt, model, spec)
            _device_layout(model, runtime)  # the collapsed layers are new tensors
            self.net = _training_net(model, runtime)
        if alpha == 0 and spec.recalibrate_bn:
            _recalibrate(model, self.train, spec, self.generator, runtime)
        move = BatchAlpha(model, spec, k, len(self.train)) if spec.batch_anneal and alpha else None
        if move:
            move(0)  # the step starts at its first batch's α
        # Where the step starts, before any training at the new α: the drop α's move causes.
        begin = None if alpha is None else self.validate()
        frozen = blend.frozen_norms(model, trainable) if has_blends else []
        inputs = EpochInputs(
            self.net,
            frozen,
            self.train,
            self.opt,
            spec,
            self.generator,
            self.targets,
            runtime,
            move,
        )
        return inputs, begin

    def validate(self) -> dict:
        """The validation loss and accuracy of the model as it is."""
        targets = self.targets.val if self.targets else None
        return evaluate(self.model, self.val, self.spec.loss, targets, self.runtime)

    def epoch(self, inputs: EpochInputs, k, alpha, final: bool, first: int, e: int, n: int) -> dict:
        """Epoch `e` of `n` of step `k` (which began at epoch `first`): its history row; the run
        stops if the loss or the weights became non-finite."""
        t0 = time.perf_counter()
        lr = lr_schedule(self.spec, final, first + e, e, n)
        tr = train_epoch(inputs, lr)
        distributed.share_buffers(self.model, self.runtime.world)  # evaluate what main saves
        tr = {name: v.item() for name, v in tr.items()}  # the epoch's one host sync
        va = self.validate()
        row = {"epoch": first + e + 1, "step": k, "alpha": alpha, "lr": lr(0), **tr, **va}
        row["seconds"] = time.perf_counter() - t0
        _check_finite(row, self.model)
        return row


def step_budget(spec: FitSpec, k: int, epoch: int) -> tuple[int, int] | None:
    """(fewest, most) epochs of step `k` when `epoch` epochs are done: the final step trains
    every epoch left; an α > 0 step its fixed epochs (even, batch) or up to `max_epochs`
    (plateau), within what the fine-tune leaves; None when that is nothing."""
    if k == len(spec.alphas) - 1:
        left = spec.epochs - epoch
        return left, left
    wanted = spec.advance.max_epochs if spec.step_epochs is None else spec.step_epochs[k]
    most = min(wanted, spec.epochs - spec.finetune_epochs - epoch)
    if most <= 0:
        return None
    return (most if spec.step_epochs is not None else min(spec.advance.min_epochs, most)), most


def _resume(checkpoint, spec, model, opt, generator, on_update) -> tuple[FitResult, int, int]:
    """A fresh result, or the one saved in `checkpoint`, restored with the state it holds."""
    saved = None
    if checkpoint is not None:
        saved = checkpoints.resume(checkpoint, spec.fingerprint, model, opt, generator)
    if saved is None:
        return FitResult(), 0, 0
    log.info("resumed from %s after step %d (epoch %d)", checkpoint, saved.next_step, saved.epoch)
    result = FitResult(saved.history, saved.steps, saved.seconds)
    if on_update:  # drops the rows of the step the killed run did not finish
        on_update(result)
    return result, saved.next_step, saved.epoch


def _training_net(model: nn.Module, runtime: Runtime) -> nn.Module:
    """What the epochs call (made once per phase: before the loop, and again for the collapsed
    student): `model` under DDP when the run spans several processes, compiled if asked."""
    net = distributed.wrap(model, runtime.world, runtime.device)
    return torch.compile(net) if runtime.compile else net


def _sync_batchnorm(model: nn.Module, runtime: Runtime) -> None:
    """`runtime.sync_batchnorm`: BatchNorm layers normalise with the whole batch's statistics,
    gathered from every process (in place: the layers keep their parameters and buffers)."""
    if not (runtime.sync_batchnorm and runtime.world.distributed):
        return
    if not runtime.cuda:
        raise UserError(SYNC_BATCHNORM_NEEDS_CUDA)
    for name, child in list(model.named_children()):
        setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(child))


def _measure(hook: StepHook | None, model: nn.Module) -> dict:
    if hook is None:
        return {}
    t0 = time.perf_counter()
    values = hook(model)
    return {**values, "on_step_seconds": time.perf_counter() - t0}


def _device_layout(model: nn.Module, runtime: Runtime) -> None:
    """The run's dtype (float64 in a float64 run), and channels_last weights where the batches
    are (`Runtime.channels_last`): the fast NHWC kernels without a layout conversion per call.
    In place: the optimizer's tensors remain."""
    model.to(runtime.dtype)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)


def _recalibrate(model: nn.Module, train: Split, spec: FitSpec, generator, runtime) -> None:
    batches = itertools.islice(train.batches(spec.batch_size, generator), spec.recalibrate_bn)
    with runtime.autocast():
        used = norms.recalibrate(model, (x for x, _, _ in batches))
    log.info("re-estimated BatchNorm statistics at α = 0 on %d training batches", used)


class _Plateau:
    """Epochs since the monitored metric last improved."""

    def __init__(self, monitor: str, patience: int):
        self.key, self.patience = monitor, patience
        self.sign = 1 if monitor.endswith("acc") else -1
        self.best = -math.inf
        self.since = 0

    def update(self, row: dict) -> bool:
        value = self.sign * row[self.key]
        if value > self.best:
            self.best, self.since = value, 0
        else:
            self.since += 1
        return self.since >= self.patience

    @property
    def best_value(self) -> float:
        return self.sign * self.best


def _step_row(k: int, alpha, rows: list[dict], monitor: _Plateau, begin: dict | None) -> dict:
    """One α step: its epochs and the accuracies at its end; `val_acc_start` (α steps only) is
    the validation accuracy as the step began, α already moved and nothing trained yet."""
    last = rows[-1]
    row = {
        "step": k,
        "alpha": alpha,
        "epochs": len(rows),
        "first_epoch": rows[0]["epoch"],
        "last_epoch": last["epoch"],
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "val_loss": last["val_loss"],
        "val_acc": last["val_acc"],
    }
    if begin is not None:
        row["val_acc_start"] = begin["val_acc"]
    row[f"best_{monitor.key}"] = monitor.best_value
    return row


class DivergenceError(UserError, RuntimeError):
    """The loss or a metric became non-finite."""


def _check_finite(row: dict, model: nn.Module) -> None:
    """Stop on a non-finite loss, or weights (one device reduction, once per epoch)."""
    bad = [k for k in ("train_loss", "val_loss") if not math.isfinite(row[k])]
    weights = [p for p in model.parameters() if p.is_floating_point()]
    if weights and not torch.stack([p.isfinite().all() for p in weights]).all():
        bad.append("weights")
    if bad:
        raise DivergenceError(
            f"training diverged at α={row['alpha']}, epoch {row['epoch']}: {', '.join(bad)} "
            "not finite; lower the learning rate (optimizer.lr) or set optimizer.grad_clip"
        )
