"""The fit loop: one loop for the teacher and for the prune phase.

A run is a sequence of *steps*, one per α (the teacher has one step with no α). A step with α > 0
trains until the monitored validation metric has not improved for `patience` epochs (at least
`min_epochs`, at most `max_epochs`), or for the fixed number of epochs of `step_epochs`, at a
constant learning rate; the last step runs every epoch left of the budget with the learning rate
annealed to zero by a cosine. If the budget for α > 0 runs out first, the remaining α > 0 steps
are skipped: α drops to 0 there, and the step table shows the α that was reached. In batch mode
each α > 0 step is one epoch over which α moves on at every batch (`batch_anneal`), ending at
the step's α. At α = 0 the blends are collapsed, so fine-tuning trains the student itself.

GPU habits: the data lives on the device as uint8 and is normalised per batch; augmentation is
batched tensor ops; metrics accumulate in device tensors and are read once per epoch, so there
is no host synchronisation inside an epoch. bf16 autocast and channels_last on CUDA.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from alphaprune import blend, norms, schedules
from alphaprune.augment import Augment
from alphaprune.config import AdvanceConfig, OptimizerConfig
from alphaprune.errors import UserError
from alphaprune.files import torch_save
from alphaprune.runtime import DeviceData, Runtime, accuracy, predict

log = logging.getLogger(__name__)
CHECKPOINT_VERSION = 1


# ------------------------------------------------------------------------------------- spec
LossFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


@dataclass(frozen=True)
class FitSpec:
    """What a fit does; built from `TeacherConfig` or `PruneConfig` by the stage."""

    alphas: list[float | None]  # [None] for the teacher
    epochs: int  # hard cap over all steps
    finetune_epochs: int  # the last epochs, reserved for the final step
    advance: AdvanceConfig
    batch_size: int
    optimizer: OptimizerConfig
    loss: LossFn
    needs_teacher: bool = False
    augment: Augment = field(default_factory=Augment)
    trainable: str = "all"  # branches | student | all
    finetune_trainable: str | None = None  # what trains at α = 0; None: as `trainable`
    finetune_lr: float | None = None  # the final step's peak learning rate; None: optimizer.lr
    recalibrate_bn: int = 0  # training batches re-estimating BatchNorm statistics at α = 0
    layer_distill: float = 0.0  # weight of the layer-wise distillation term while α > 0
    # Epochs of each α > 0 step, fixed (advance mode even); None: each step runs to a plateau.
    step_epochs: list[int] | None = None
    # Batch mode: the schedule's α > 0 steps, shared out over every training batch of the α > 0
    # epochs (then each α > 0 step is one epoch, and `alphas` holds the α at each epoch's end).
    batch_anneal: list[float] | None = None
    fingerprint: str = ""  # identifies the configuration a checkpoint belongs to


@dataclass
class FitResult:
    history: list[dict] = field(default_factory=list)  # one row per epoch
    steps: list[dict] = field(default_factory=list)  # one row per α step
    seconds: float = 0.0


def params_of(opt: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for group in opt.param_groups for p in group["params"]]


def make_optimizer(params: list[nn.Parameter], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


# -------------------------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    train: DeviceData,
    val: DeviceData,
    spec: FitSpec,
    runtime: Runtime,
    generator: torch.Generator,
    *,
    teacher: nn.Module | None = None,
    checkpoint: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    on_update: Callable[[FitResult], None] | None = None,
) -> FitResult:
    """Train `model` through `spec`'s α steps; resume from `checkpoint` if it holds a
    completed step of the same configuration, and write one there after every step.
    `on_epoch` gets each epoch's history row; `on_update` the whole result so far, after every
    epoch and α step and on resuming (e.g. to rewrite the history files as they grow)."""
    has_blends = any(True for _ in blend.blends(model))
    _device_layout(model, runtime)
    params = blend.set_trainable(model, spec.trainable) if has_blends else list(model.parameters())
    opt = make_optimizer(params, spec.optimizer)
    blend.set_distill(model, spec.layer_distill > 0)
    result, first_step, epoch = FitResult(), 0, 0
    if checkpoint is not None and checkpoint.exists():
        state = _load_checkpoint(checkpoint, spec.fingerprint)
        if state is not None:
            first_step, epoch = _restore(state, model, opt, generator, result)
            log.info("resumed from %s after step %d (epoch %d)", checkpoint, first_step, epoch)
            if on_update:  # drops the rows of the step the killed run did not finish
                on_update(result)
    targets = _TeacherTargets(teacher, train, val, runtime, spec) if spec.needs_teacher else None
    val_targets = targets.val if targets else None
    start = time.perf_counter() - result.seconds

    for k, alpha in enumerate(spec.alphas):
        if k < first_step:
            continue
        final = k == len(spec.alphas) - 1
        if final:
            n_min = n_max = spec.epochs - epoch
        else:
            wanted = spec.advance.max_epochs if spec.step_epochs is None else spec.step_epochs[k]
            n_max = min(wanted, spec.epochs - spec.finetune_epochs - epoch)
            if n_max <= 0:
                continue  # the α > 0 budget is spent: α drops to 0 at the final step
            n_min = n_max if spec.step_epochs is not None else min(spec.advance.min_epochs, n_max)
        trainable = spec.trainable
        if alpha is not None:
            blend.set_alpha(model, alpha)
            if alpha == 0:
                if has_blends:  # before the collapse, which drops what tells branch from original
                    trainable = spec.finetune_trainable or spec.trainable
                    _train_also(opt, blend.set_trainable(model, trainable))
                blend.collapse(model)  # exact at α = 0, and the student trains faster
                _device_layout(model, runtime)  # the collapsed layers are new tensors
                if spec.recalibrate_bn:
                    _recalibrate(model, train, spec, generator, runtime)
        net = torch.compile(model) if runtime.compile else model
        frozen = blend.frozen_norms(model, trainable) if has_blends else []
        move = _BatchAlpha(model, spec, k, len(train)) if spec.batch_anneal and alpha else None
        if move:
            move(0)  # the step starts at its first batch's α
        # Where the step starts, before any training at the new α: the drop α's move causes.
        begin = None if alpha is None else _evaluate(model, val, spec.loss, val_targets, runtime)
        monitor = _Plateau(spec.advance.monitor, spec.advance.patience)
        first_epoch = epoch
        base_lr = spec.finetune_lr if final and spec.finetune_lr else spec.optimizer.lr
        for e in range(n_max):
            t0 = time.perf_counter()
            lr = _lr_schedule(base_lr, final, e, n_max)
            tr = _train_epoch(net, frozen, train, opt, spec, generator, targets, lr, runtime, move)
            tr = {name: v.item() for name, v in tr.items()}  # the epoch's one host sync
            va = _evaluate(model, val, spec.loss, val_targets, runtime)
            epoch += 1
            row = {
                "epoch": epoch,
                "step": k,
                "alpha": alpha,
                "lr": lr(0),
                **tr,
                **va,
                "seconds": time.perf_counter() - t0,
            }
            _check_finite(row, model)
            result.history.append(row)
            if on_epoch:
                on_epoch(row)
            if on_update:
                on_update(result)
            stalled = monitor.update(row)
            if not final and e + 1 >= n_min and stalled:
                break
        # Un-augmented and in eval mode: comparable with the teacher's (for alpha_hold_train).
        clean = accuracy(model, train, runtime)
        rows = result.history[first_epoch:epoch]
        result.steps.append(_step_row(k, alpha, rows, monitor, clean, begin))
        result.seconds = time.perf_counter() - start
        if on_update:
            on_update(result)
        if checkpoint is not None and not final:
            _save_checkpoint(checkpoint, k + 1, epoch, model, opt, generator, result, spec)
    return result


def _device_layout(model: nn.Module, runtime: Runtime) -> None:
    """channels_last weights on CUDA, matching the channels_last batches: cuDNN's fast NHWC
    kernels without a layout conversion per call. In place: the optimizer's tensors remain."""
    if runtime.cuda:
        model.to(memory_format=torch.channels_last)


def _train_also(opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
    """Give `opt` the parameters it does not hold yet, as a group with its defaults (those it
    holds keep their momentum; those now frozen get no gradient, so SGD and AdamW skip them)."""
    held = {id(p) for p in params_of(opt)}
    new = [p for p in params if id(p) not in held]
    if new:
        opt.add_param_group({"params": new})


def _recalibrate(model: nn.Module, train: DeviceData, spec: FitSpec, generator, runtime) -> None:
    batches = itertools.islice(train.batches(spec.batch_size, generator), spec.recalibrate_bn)
    with runtime.autocast():
        used = norms.recalibrate(model, (x for x, _, _ in batches))
    log.info("re-estimated BatchNorm statistics at α = 0 on %d training batches", used)


class _BatchAlpha:
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


def _lr_schedule(base: float, final: bool, e: int, n: int) -> Callable[[float], float]:
    """lr as a function of the fraction of this epoch done: constant while α moves, cosine to 0
    over the final step."""
    if not final:
        return lambda frac: base
    return lambda frac: base * 0.5 * (1 + math.cos(math.pi * (e + frac) / n))


class _TeacherTargets:
    """Teacher logits for losses that need them. Without augmentation the inputs never change,
    so the teacher runs once per split instead of once per step."""

    def __init__(self, teacher, train: DeviceData, val: DeviceData, runtime: Runtime, spec):
        if teacher is None:
            raise ValueError("this loss needs the teacher's logits, but no teacher was given")
        self.teacher = teacher.eval().requires_grad_(False)
        self.runtime = runtime
        self.val = predict(self.teacher, val, runtime)
        self.train = None if spec.augment.active else predict(self.teacher, train, runtime)

    @torch.no_grad()
    def __call__(self, x: Tensor, idx: Tensor) -> Tensor:
        if self.train is not None:
            return self.train[idx]
        with self.runtime.autocast():
            return self.teacher(x).float()


def _train_epoch(net, frozen, data, opt, spec, generator, targets, lr, runtime, move=None) -> dict:
    net.train()
    for m in frozen:
        m.eval()
    dev = data.y.device
    loss_sum = torch.zeros((), device=dev)
    correct = torch.zeros((), device=dev, dtype=torch.long)
    seen = 0
    steps = max(1, len(data) // spec.batch_size)
    for i, (x, y, idx) in enumerate(data.batches(spec.batch_size, generator)):
        if spec.augment.active:
            x = spec.augment(x, generator)
        for group in opt.param_groups:
            group["lr"] = lr(i / steps)
        if move is not None:
            move(i)
        with runtime.autocast():
            logits = net(x).float()
        t = targets(x, idx) if targets is not None else None
        loss = spec.loss(logits, y, t)
        if spec.layer_distill:
            term = blend.distill_loss(net)
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
    return {"train_loss": loss_sum / seen, "train_acc": correct / seen}  # device tensors


@torch.no_grad()
def _evaluate(model, data: DeviceData, loss_fn: LossFn, teacher_logits, runtime) -> dict:
    logits = predict(model, data, runtime)
    return {
        "val_loss": loss_fn(logits, data.y, teacher_logits).item(),
        "val_acc": (logits.argmax(1) == data.y).float().mean().item(),
    }


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


def _step_row(
    k: int, alpha, rows: list[dict], monitor: _Plateau, clean_train_acc: float, begin: dict | None
) -> dict:
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
        "train_acc_clean": clean_train_acc,
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


# ------------------------------------------------------------------------------ checkpoints
def _save_checkpoint(path, next_step, epoch, model, opt, generator, result, spec) -> None:
    torch_save(
        path,
        {
            "format_version": CHECKPOINT_VERSION,
            "fingerprint": spec.fingerprint,
            "next_step": next_step,
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "result": json.dumps(
                {"history": result.history, "steps": result.steps, "seconds": result.seconds}
            ),
        },
    )


class CheckpointError(UserError, ValueError):
    """A checkpoint cannot be trusted (unreadable, or with code in it): the run stops."""


def _load_checkpoint(path: Path, fingerprint: str) -> dict | None:
    """The saved state if it belongs to this configuration; None (start over) if it belongs to
    another configuration or format version. Writes are atomic, so an unreadable checkpoint was
    damaged or tampered with afterwards: that stops the run rather than being skipped quietly."""
    try:  # weights_only: plain tensors and containers; a pickled object with code is refused
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure means the file is unusable
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path}: not a safe, readable alphaprune checkpoint ({reason[:160]}); delete it "
            "to start this run over"
        ) from None
    if not isinstance(state, dict) or state.get("format_version") != CHECKPOINT_VERSION:
        version = state.get("format_version") if isinstance(state, dict) else None
        log.warning(
            "checkpoint %s has format version %s, this alphaprune writes %s; starting over",
            path,
            version,
            CHECKPOINT_VERSION,
        )
        return None
    if state.get("fingerprint") != fingerprint:
        log.warning("checkpoint %s belongs to another configuration; starting over", path)
        return None
    return state


def _restore(state: dict, model, opt, generator, result: FitResult) -> tuple[int, int]:
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    saved = json.loads(state["result"])
    result.history, result.steps, result.seconds = (
        saved["history"],
        saved["steps"],
        saved["seconds"],
    )
    return state["next_step"], state["epoch"]
