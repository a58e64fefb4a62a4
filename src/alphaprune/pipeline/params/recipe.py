"""The recipe sections of the params schema: how the teacher trains (`TeacherConfig`) and how a
variant is pruned (`PruneConfig`: its branch kind, amount and target, α schedule, rule for moving
α on, loss, optimizer and augmentation). `variants:` are `PruneConfig`s merged over `prune:`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from alphaprune import schedules
from alphaprune.pipeline.params.base import (
    Fraction,
    NonNegativeInt,
    PositiveInt,
    Probability,
    Strict,
)

ROUND_TO = 8  # prune.round_to unset: widths in blocks of 8 (see PruneConfig.round_to)


# ------------------------------------------------------------------------------ optimisation
# Each engine type's config (`Optimizer`, `Augment`, `Advance`, `Runtime`) has the engine
# type's fields and defaults, adds the validation, and becomes it through
# `alphaprune.pipeline.stages.engine.build`. The defaults are written out here rather than read from
# the engine types, whose modules import torch: this module is what Snakemake loads to plan a
# run, and torch would add 1.2 s to every `snakemake -n`. tests/pipeline/stages/test_engine.py holds
# the two equal.
class OptimizerConfig(Strict):
    name: Literal["sgd", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0, le=10)] = 0.05  # per batch, not scaled
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, Field(ge=0, lt=1)] = 5e-4
    # Max global gradient norm (None: no clipping). Guards the product of a low-rank pair,
    # whose sharpness can outgrow the learning rate when BatchNorm statistics are frozen.
    grad_clip: Annotated[float, Field(gt=0)] | None = None


class PruneOptimizerConfig(OptimizerConfig):
    """The prune phase's defaults: a smaller lr, and clipping on (see `grad_clip`)."""

    lr: Annotated[float, Field(gt=0, le=10)] = 0.01
    grad_clip: Annotated[float, Field(gt=0)] | None = 5.0


class AugmentConfig(Strict):
    noise_fraction: Probability = 0.0  # share of examples given noise
    noise_std: Annotated[float, Field(ge=0)] = 0.0  # normalised input units
    crop_flip: bool = False
    crop_padding: NonNegativeInt = 4
    resized_crop: bool = False
    resized_crop_scale: Annotated[float, Field(gt=0, le=1)] = 0.08

    @model_validator(mode="after")
    def _noise_consistent(self) -> AugmentConfig:
        if self.noise_fraction > 0 and self.noise_std == 0:
            raise ValueError("noise_fraction > 0 needs noise_std > 0")
        return self


class TeacherConfig(Strict):
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 64
    optimizer: OptimizerConfig = OptimizerConfig()
    augment: AugmentConfig = AugmentConfig()
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0


# ------------------------------------------------------------------------------------- prune
class _Schedule(Strict):
    @model_validator(mode="after")
    def _yields_alphas(self):
        # A schedule that yields no valid α sequence fails at load time, not mid-run.
        schedules.alpha_sequence(**self.model_dump())
        return self


class ExponentialSchedule(_Schedule):
    kind: Literal["exponential"] = "exponential"
    rate: Fraction = 0.05  # α_k = (1 - rate)^k
    alpha_min: Fraction = 0.05  # below this the next α is 0


class LinearSchedule(_Schedule):
    kind: Literal["linear"]
    steps: PositiveInt = 10


class CosineSchedule(_Schedule):
    kind: Literal["cosine"]
    steps: PositiveInt = 10


class StepSchedule(_Schedule):
    kind: Literal["step"]
    values: list[float]


class OneshotSchedule(_Schedule):
    kind: Literal["oneshot"] = "oneshot"


Schedule = Annotated[
    ExponentialSchedule | LinearSchedule | CosineSchedule | StepSchedule | OneshotSchedule,
    Field(discriminator="kind"),
]


class AdvanceConfig(Strict):
    """When α moves on. plateau (the seed's): after `patience` epochs without improvement,
    within [min, max] epochs; α drops to 0 wherever it is when the α > 0 budget runs out.
    even: the schedule's steps share the α > 0 budget equally (no plateau wait), so that every
    schedule reaches its last α before the fine-tune epochs (the plateau keys are unused).
    batch: as even, but the steps share the budget's training batches, so α moves a little at
    every batch instead of jumping once per epoch."""

    mode: Literal["plateau", "even", "batch"] = "plateau"
    monitor: Literal["val_acc", "val_loss"] = "val_acc"
    patience: PositiveInt = 2
    min_epochs: PositiveInt = 1
    max_epochs: PositiveInt = 10

    @model_validator(mode="after")
    def _ordered(self) -> AdvanceConfig:
        if self.min_epochs > self.max_epochs:
            raise ValueError(f"min_epochs ({self.min_epochs}) > max_epochs ({self.max_epochs})")
        return self


class CELoss(Strict):
    kind: Literal["ce"] = "ce"
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0


class RegressionLoss(Strict):
    kind: Literal["regression"]


class KDLoss(Strict):
    kind: Literal["kd"]
    temperature: Annotated[float, Field(gt=0)] = 4.0
    weight: Probability = 0.9


Loss = Annotated[CELoss | RegressionLoss | KDLoss, Field(discriminator="kind")]


class PruneConfig(Strict):
    """A prune recipe. The defaults are the best measured one (params.yaml's `recommended`:
    low-rank branches fitted by least squares, put in at once, the whole student fine-tuned,
    BatchNorm re-estimated); the seed's recipe is params.yaml's variant `seed`."""

    amount: Fraction = 0.65  # fraction of the teacher's `target` the student no longer has
    # params: of its parameters; macs: of its multiply-accumulates for one example (batch 1);
    # latency: of the teacher's time on the engine, batch and threads of `latency.table` (branches
    # channels and blocks+channels: the channels whose removal saves the time with the least
    # importance lost, planned from the measured table the `table` stage writes)
    target: Literal["params", "macs", "latency"] = "params"
    # The kinds of alphaprune.branches.KINDS, spelled out so that the params schema (and so
    # `prepare`) does not depend on the branches' code; a test checks the two agree. `blocks`
    # fades whole residual blocks to their shortcuts (alphaprune.blocks; init does not apply);
    # `blocks+channels` both, in one student, the split chosen by the allocator
    # (alphaprune.budget.blocks_channels; init applies to its channels).
    branch: Literal[
        "pointwise", "lowrank", "dwsep", "sparse", "channels", "blocks", "blocks+channels"
    ] = "lowrank"
    init: Literal["random", "pretrained", "lsq"] = "lsq"
    exclude: list[str] | None = None  # glob patterns of module names; None: first conv + classifier
    trainable: Literal["branches", "student", "all"] = "student"
    # What trains at α = 0 (after collapse, "student" is everything left); None: as `trainable`.
    finetune_trainable: Literal["branches", "student"] | None = None
    # The learning rate the α = 0 fine-tune starts its cosine from; None: optimizer.lr.
    finetune_lr: Annotated[float, Field(gt=0)] | None = None
    # restart: a constant lr while α > 0, then a cosine from finetune_lr (or optimizer.lr) to 0
    # over the α = 0 epochs; cosine: one cosine from optimizer.lr to 0 over all `epochs`, the
    # anneal and the fine-tune alike (no restart at the collapse; finetune_lr unset).
    lr_schedule: Literal["restart", "cosine"] = "restart"
    # Training batches over which the student's BatchNorm statistics are re-estimated at α = 0.
    recalibrate_bn: NonNegativeInt = 50
    # Weight of the layer-wise distillation term while α > 0 (0: off; see blend.set_distill).
    layer_distill: Annotated[float, Field(ge=0)] = 0.0
    schedule: Schedule = OneshotSchedule()
    advance: AdvanceConfig = AdvanceConfig()
    epochs: PositiveInt = 60  # hard cap on the whole prune phase
    finetune_epochs: PositiveInt = 5  # the last epochs, kept for α = 0
    loss: Loss = CELoss()
    augment: AugmentConfig = AugmentConfig()
    batch_size: PositiveInt = 64
    optimizer: PruneOptimizerConfig = PruneOptimizerConfig()
    # training examples used by init=lsq, and by the branches with blocks to measure damage
    calibration_size: PositiveInt = 512
    # branches channels and blocks+channels: every narrowed group keeps a multiple of this many
    # channels (and at least this many); 1: any width; unset: ROUND_TO (8, the AVX2 block of 8
    # floats). On the digits CNN, widths 16, 17, 34 ran 0.97x the teacher in onnxruntime for 2.4x
    # fewer MACs, and 16, 16, 32 ran 1.45x (batch 1) and 2.2x (batch 64):
    # benchmarks/digits_channels.py.
    round_to: PositiveInt | None = None
    # target latency, how the channels are chosen: knapsack_summed (unset: the least importance
    # lost for the time saved, budget.latency.knapsack, each channel's L2 magnitude summed over
    # its group's layers: a ResNet stage's stream weighs as the layers it spans), knapsack (the
    # same on Torch-Pruning's importance, normalised per group) or global (Torch-Pruning's
    # own allocation: the globally least important channels, as many as the table predicts save
    # `amount`; for Torch-Pruning at the same predicted speed). params and macs always rank
    # globally.
    ranking: Literal["knapsack", "knapsack_summed", "global"] | None = None
    # branch blocks+channels: how many of the ranked blocks to drop, the rest of the budget in
    # channels (a split fixed by hand, to sweep or compare splits); unset: the split whose
    # one-shot student moves the logits least (alphaprune.budget.blocks_channels)
    dropped_blocks: NonNegativeInt | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PruneConfig:
        if self.finetune_epochs >= self.epochs and self.schedule.kind != "oneshot":
            raise ValueError(
                f"finetune_epochs ({self.finetune_epochs}) leaves no epochs of the {self.epochs} "
                "for α > 0; lower it or raise epochs"
            )
        if self.lr_schedule == "cosine" and self.finetune_lr is not None:
            raise ValueError(
                "finetune_lr starts the fine-tune's own cosine; lr_schedule 'cosine' has one "
                "cosine over the whole prune from optimizer.lr: unset one of them"
            )
        if self.branch == "sparse" and self.target == "macs":
            raise ValueError(
                "target 'macs' cannot be met with branch 'sparse': a masked layer still runs "
                "densely, so its MACs do not fall; use target 'params' or a structured branch"
            )
        if self.target == "latency" and self.branch not in ("channels", "blocks+channels"):
            raise ValueError(
                f"target 'latency' is planned for branches 'channels' and 'blocks+channels' only, "
                f"not {self.branch!r} (the latency table times narrower channels); use target "
                "'params' or 'macs'"
            )
        if self.branch in ("blocks", "blocks+channels") and "branches" in (
            self.trainable,
            self.finetune_trainable,
        ):
            raise ValueError(
                f"trainable 'branches' does not apply to branch {self.branch!r}: a dropped block's "
                "branch is its shortcut, which has nothing to learn (the identity, or the "
                "option-A map); use 'student' (the layers that stay learn what the blocks did)"
            )
        if self.branch == "sparse" and self.init == "lsq":
            raise ValueError("init 'lsq' is not supported for branch 'sparse'; use 'pretrained'")
        if self.branch in ("channels", "blocks+channels") and self.init == "random":
            raise ValueError(
                f"init 'random' is not supported for branch {self.branch!r}: its branches are the "
                "readers of the removed channels, which keep their other inputs; use "
                "'pretrained' (the kept columns as they are) or 'lsq' (refitted on them)"
            )
        if self.ranking is not None and self.target != "latency":
            raise ValueError(
                f"ranking applies to target 'latency' only (target {self.target!r} always ranks "
                "channels globally)"
            )
        if self.dropped_blocks is not None and self.branch != "blocks+channels":
            raise ValueError(
                f"dropped_blocks applies to branch 'blocks+channels' only, not {self.branch!r}"
            )
        if self.round_to not in (None, 1) and self.branch not in ("channels", "blocks+channels"):
            raise ValueError(
                f"round_to applies to branches 'channels' and 'blocks+channels' only, not "
                f"{self.branch!r}"
            )
        return self

    @property
    def channel_block(self) -> int:
        """The block `round_to` asks for, its default filled in."""
        return ROUND_TO if self.round_to is None else self.round_to

    def alphas(self) -> list[float]:
        """The α sequence this recipe trains at, ending at 0."""
        return schedules.alpha_sequence(**self.schedule.model_dump())

    def budget_fit(self) -> schedules.BudgetFit:
        """Whether this recipe's α steps fit its α > 0 epoch budget (see schedules.budget_fit)."""
        a = self.advance
        budget = self.epochs - self.finetune_epochs
        return schedules.budget_fit(self.alphas(), budget, a.mode, a.min_epochs, a.max_epochs)
