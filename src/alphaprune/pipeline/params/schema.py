"""Typed, validated parameters: the schema of ``params.yaml``.

Everything a run depends on lives in one YAML file; this module turns it into frozen pydantic
objects so that library code receives a narrow, typed config (``PruneConfig``, ``DataConfig`` …)
and never a raw dict. Unknown keys and bad values are rejected with the key's full path, e.g.
``params.yaml: variants.seed.schedule.rate: Input should be less than 1, got 1.5``.

Reading, merging and validating params files is `loader`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alphaprune import schedules
from alphaprune.errors import UserError
from alphaprune.registry import Registry

ROUND_TO = 8  # prune.round_to unset: widths in blocks of 8 (see PruneConfig.round_to)
VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

Fraction = Annotated[float, Field(gt=0, lt=1)]
Probability = Annotated[float, Field(ge=0, le=1)]
PositiveInt = Annotated[int, Field(ge=1, strict=True)]
NonNegativeInt = Annotated[int, Field(ge=0, strict=True)]


class ConfigError(UserError, ValueError):
    """A configuration problem, already phrased as one line: ``file: key.path: what, got value``."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------- data
class DataConfig(_Strict):
    name: Literal["digits", "cifar10", "imagefolder"] = "digits"
    root: str = "data/raw"  # where cifar10 / imagefolder read their raw files
    val_fraction: Fraction = 0.1  # carved from the training split, stratified, fixed seed
    test_fraction: Fraction = 0.2  # only for sources without their own test split (digits)
    subset: PositiveInt | None = None  # cap on training examples (stratified), for quick runs
    # Every image resized (its shorter side) to image_size and centre-cropped square when
    # prepared, so a photo collection of many sizes becomes one tensor; grey and RGBA images
    # among RGB ones become RGB. None: the images are kept as they are (and must share a size).
    image_size: PositiveInt | None = None
    # How an imagefolder is prepared: resident (decoded into one tensor, the fast path), streamed
    # (an index of the files, each batch read and decoded from them: needs image_size, and a
    # folder or an uncompressed .tar), or auto: streamed when the decoded images (as RGB) would
    # take more than memory_gb. The other sources are always resident.
    storage: Literal["auto", "resident", "streamed"] = "auto"
    memory_gb: Annotated[float, Field(gt=0)] = 8.0

    @model_validator(mode="after")
    def _streamable(self) -> DataConfig:
        if self.storage == "streamed" and self.name != "imagefolder":
            raise ValueError(f"data.storage: streamed reads an imagefolder, not {self.name}")
        if self.storage == "streamed" and self.image_size is None:
            raise ValueError(
                "data.storage: streamed needs data.image_size (a batch needs one size)"
            )
        return self


# The names of alphaprune.models.MODELS, spelled out so that the schema imports no torch (the
# models' module does); tests/pipeline/test_engine.py checks the two agree.
MODEL_NAMES = ("cnn", "resnet20", "resnet56", "vgg11", "vgg13", "vgg16", "vgg19")


class ModelConfig(_Strict):
    name: str = "cnn"  # one of MODEL_NAMES, or tv:<torchvision name>

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        if not name.startswith("tv:") and name not in MODEL_NAMES:
            known = Registry("model", hint=", or tv:<torchvision name>")
            known.update(dict.fromkeys(MODEL_NAMES))
            raise ValueError(known.unknown(name))
        return name


# ------------------------------------------------------------------------------ optimisation
# Each engine type's config (`Optimizer`, `Augment`, `Advance`, `Runtime`) has the engine
# type's fields and defaults, adds the validation, and becomes it through
# `alphaprune.pipeline.stages.engine.build`. The defaults are written out here rather than read from
# the engine types, whose modules import torch: this module is what Snakemake loads to plan a
# run, and torch would add 1.2 s to every `snakemake -n`. tests/pipeline/test_engine.py holds
# the two equal.
class OptimizerConfig(_Strict):
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


class AugmentConfig(_Strict):
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


class TeacherConfig(_Strict):
    epochs: PositiveInt = 30
    batch_size: PositiveInt = 64
    optimizer: OptimizerConfig = OptimizerConfig()
    augment: AugmentConfig = AugmentConfig()
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0


# ------------------------------------------------------------------------------------- prune
class _Schedule(_Strict):
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


class AdvanceConfig(_Strict):
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


class CELoss(_Strict):
    kind: Literal["ce"] = "ce"
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0


class RegressionLoss(_Strict):
    kind: Literal["regression"]


class KDLoss(_Strict):
    kind: Literal["kd"]
    temperature: Annotated[float, Field(gt=0)] = 4.0
    weight: Probability = 0.9


Loss = Annotated[CELoss | RegressionLoss | KDLoss, Field(discriminator="kind")]


class PruneConfig(_Strict):
    """A prune recipe. The defaults are the best measured one (params.yaml's `recommended`:
    low-rank branches fitted by least squares, put in at once, the whole student fine-tuned,
    BatchNorm re-estimated); the seed's recipe is params.yaml's variant `seed`."""

    amount: Fraction = 0.65  # fraction of the teacher's `target` the student no longer has
    # params: of its parameters; macs: of its multiply-accumulates for one example (batch 1)
    target: Literal["params", "macs"] = "params"
    # The kinds of alphaprune.branches.BRANCHES, spelled out so that the params schema (and so
    # `prepare`) does not depend on the branches' code; a test checks the two agree.
    branch: Literal["pointwise", "lowrank", "dwsep", "sparse", "channels"] = "lowrank"
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
    calibration_size: PositiveInt = 512  # training examples used by init=lsq
    # branch channels: every narrowed group keeps a multiple of this many channels (and at least
    # this many); 1: any width; unset: ROUND_TO (8, the AVX2 block of 8 floats). On the digits
    # CNN, widths 16, 17, 34 ran 0.97x the teacher in onnxruntime for 2.4x fewer MACs, and 16,
    # 16, 32 ran 1.45x (batch 1) and 2.2x (batch 64): benchmarks/digits_channels.py.
    round_to: PositiveInt | None = None

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
        if self.branch == "sparse" and self.init == "lsq":
            raise ValueError("init 'lsq' is not supported for branch 'sparse'; use 'pretrained'")
        if self.branch == "channels" and self.init == "random":
            raise ValueError(
                "init 'random' is not supported for branch 'channels': its branches are the "
                "readers of the removed channels, which keep their other inputs; use "
                "'pretrained' (the kept columns as they are) or 'lsq' (refitted on them)"
            )
        if self.round_to not in (None, 1) and self.branch != "channels":
            raise ValueError(f"round_to applies to branch 'channels' only, not {self.branch!r}")
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


# -------------------------------------------------------------------------------- eval, run
class EvalConfig(_Strict):
    # The variant every other is compared with (None: the first variant), and the confidence
    # of every interval; the verdicts hold all comparisons together to 1 - confidence (Holm).
    reference: str | None = None
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    tolerance_pp: Annotated[float, Field(ge=0)] = 1.0  # "α held" window, percentage points
    noise_std: Annotated[float, Field(ge=0)] = 0.5  # Gaussian noise for noisy-test accuracy


class LatencyConfig(_Strict):
    # What `alphaprune latency` times, teacher and student alike, in a job holding the machine
    # alone: onnxruntime and PyTorch eager on the CPU at `batch` and `throughput_batch` on
    # `threads` intra-op threads, and on CUDA (when runtime.device picks it) at `batch` and
    # `cuda_batch`. Every time is the median of `rounds` timings, teacher and student taking
    # turns (who goes first alternating), each repeating the forward pass for at least `seconds`
    # after a warm-up; every speedup is the median over rounds of that round's ratio.
    threads: PositiveInt = 1
    batch: PositiveInt = 1
    throughput_batch: PositiveInt = 64
    cuda_batch: PositiveInt = 256
    seconds: Annotated[float, Field(gt=0)] = 0.1
    rounds: PositiveInt = 3


class RuntimeConfig(_Strict):
    device: str = "auto"  # auto: cuda, then mps, then cpu
    compile: bool = False  # torch.compile the training model
    # auto: bf16 autocast on CUDA, float32 elsewhere; float32; float64 (numerical checks: slow)
    precision: Literal["auto", "float32", "float64"] = "auto"
    eval_batch_size: PositiveInt = 1024
    # device: images live on the GPU (fastest); host: pinned host memory + DataLoader workers;
    # auto: device when the prepared data takes at most a quarter of the free GPU memory.
    data_placement: Literal["auto", "device", "host"] = "auto"
    workers: NonNegativeInt = 4  # DataLoader workers for host placement
    # Training jobs that share one GPU (small prunes leave a large GPU mostly idle): each GPU
    # has this many slots for `auto` to claim; run snakemake with --resources gpu=<GPUs × this>.
    jobs_per_gpu: PositiveInt = 1
    # Processes one training run spans, one a GPU (DDP): the stage starts them with torchrun;
    # each trains on batch_size / processes examples of every batch.
    processes: PositiveInt = 1
    # BatchNorm over the whole batch rather than each process's share (GPUs only).
    sync_batchnorm: bool = False


def _distinct_seeds(seeds: list[int]) -> list[int]:
    if len(set(seeds)) != len(seeds):
        raise ValueError("seeds must be distinct")
    return seeds


Seeds = Annotated[list[NonNegativeInt], Field(min_length=1)]


class ReplicatesConfig(_Strict):
    """Independent repetitions of every variant. Each (teacher, seed) pair is one replicate:
    `teachers` are the seeds of the teachers trained (one each), `seeds` those of the prune runs
    of every variant on every teacher. [0] and [0, 1, 2]: three prunes of one teacher;
    [0, 1, 2] and [0]: three teachers, each pruned once."""

    seeds: Seeds = [0]
    teachers: Seeds = [0]

    _distinct = field_validator("seeds", "teachers")(_distinct_seeds)

    def runs(self) -> list[tuple[int, int]]:
        """(teacher, seed) of every replicate, teacher-major."""
        return [(t, s) for t in self.teachers for s in self.seeds]

    def names(self) -> list[str]:
        """Every replicate's name (its folder under a variant's): t0-s0, t0-s1, …"""
        return [run_name(t, s) for t, s in self.runs()]

    def teacher_names(self) -> list[str]:
        """Every teacher's folder name: t0, t1, …"""
        return [f"t{t}" for t in self.teachers]


def run_name(teacher: int, seed: int) -> str:
    """A replicate's name, its folder under the variant's: t0-s1."""
    return f"t{teacher}-s{seed}"


class Params(_Strict):
    seed: NonNegativeInt = 0  # the data split (prepare); runs take theirs from `replicates`
    replicates: ReplicatesConfig = ReplicatesConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    teacher: TeacherConfig = TeacherConfig()
    prune: PruneConfig = PruneConfig()
    variants: dict[str, PruneConfig] = Field(default_factory=dict)
    eval: EvalConfig = EvalConfig()
    latency: LatencyConfig = LatencyConfig()
    runtime: RuntimeConfig = RuntimeConfig()

    @model_validator(mode="after")
    def _batches_split_evenly(self) -> Params:
        n = self.runtime.processes
        sizes = {"teacher": self.teacher.batch_size, "prune": self.prune.batch_size}
        sizes |= {f"variants.{k}": v.batch_size for k, v in self.variants.items()}
        for where, size in sizes.items():
            if size % n:
                raise ValueError(
                    f"{where}.batch_size {size} does not split evenly over runtime.processes {n}"
                )
        return self

    @property
    def reference(self) -> str:
        """The variant the others are compared with."""
        return self.eval.reference or next(iter(self.variants))

    def variant(self, name: str) -> PruneConfig:
        try:
            return self.variants[name]
        except KeyError:
            known = ", ".join(self.variants) or "(none)"
            raise ConfigError(f"unknown variant {name!r}; params define: {known}") from None
