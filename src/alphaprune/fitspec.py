"""What a fit does (`FitSpec`), with its optimizer (`Optimizer`) and its rule for moving α on
(`Advance`): plain data, built by the caller (the pipeline builds them from the params schema,
which takes its defaults from here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from alphaprune.augment import Augment

LossFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]


@dataclass(frozen=True)
class Optimizer:
    """The optimizer of a fit: SGD (Nesterov momentum unless `nesterov` is False) or AdamW."""

    name: str = "sgd"  # sgd | adamw
    lr: float = 0.05  # per batch of `batch_size`, not scaled
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    grad_clip: float | None = None  # max global gradient norm; None: no clipping


@dataclass(frozen=True)
class Advance:
    """When α moves on (see `fit`): plateau (after `patience` epochs without improvement of
    `monitor`, within [`min_epochs`, `max_epochs`]), even (fixed epochs per step, from
    `FitSpec.step_epochs`) or batch (α moving at every batch, `FitSpec.batch_anneal`)."""

    mode: str = "plateau"  # plateau | even | batch
    monitor: str = "val_acc"  # val_acc | val_loss
    patience: int = 2
    min_epochs: int = 1
    max_epochs: int = 10


@dataclass(frozen=True)
class FitSpec:
    """What a fit does (the pipeline builds one per stage: `pipeline.stages.engine`)."""

    alphas: list[float | None]  # [None] for the teacher
    epochs: int  # hard cap over all steps
    finetune_epochs: int  # the last epochs, reserved for the final step
    advance: Advance
    batch_size: int
    optimizer: Optimizer
    loss: LossFn
    needs_teacher: bool = False
    augment: Augment = field(default_factory=Augment)
    trainable: str = "all"  # branches | student | all
    finetune_trainable: str | None = None  # what trains at α = 0; None: as `trainable`
    finetune_lr: float | None = None  # the final step's peak learning rate; None: optimizer.lr
    # restart: constant lr while α > 0, then a cosine to 0 over the final step (from
    # finetune_lr); cosine: one cosine from optimizer.lr to 0 over all `epochs`.
    lr_schedule: str = "restart"
    recalibrate_bn: int = 0  # training batches re-estimating BatchNorm statistics at α = 0
    layer_distill: float = 0.0  # weight of the layer-wise distillation term while α > 0
    # Epochs of each α > 0 step, fixed (advance mode even); None: each step runs to a plateau.
    step_epochs: list[int] | None = None
    # Batch mode: the schedule's α > 0 steps, shared out over every training batch of the α > 0
    # epochs (then each α > 0 step is one epoch, and `alphas` holds the α at each epoch's end).
    batch_anneal: list[float] | None = None
    fingerprint: str = ""  # identifies the configuration a checkpoint belongs to
