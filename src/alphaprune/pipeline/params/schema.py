"""Typed, validated parameters: the schema of ``params.yaml``.

Everything a run depends on lives in one YAML file; this module turns it into frozen pydantic
objects so that library code receives a narrow, typed config (``PruneConfig``, ``DataConfig`` …)
and never a raw dict. Unknown keys and bad values are rejected with the key's full path, e.g.
``params.yaml: variants.seed.schedule.rate: Input should be less than 1, got 1.5``.

The recipe sections (`teacher`, `prune` and each variant) are `recipe`; reading, merging and
validating params files is `loader`.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from alphaprune.pipeline.params.base import (
    ConfigError,
    Fraction,
    NonNegativeInt,
    PositiveInt,
    Strict,
)
from alphaprune.pipeline.params.recipe import PruneConfig, TeacherConfig
from alphaprune.registry import Registry

VARIANT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


# --------------------------------------------------------------------------------------- data
class DataConfig(Strict):
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


# The names alphaprune.models registers, spelled out so that the schema imports no torch (the
# models' module does); tests/pipeline/stages/test_engine.py checks the two agree.
MODEL_NAMES = ("cnn", "resnet20", "resnet56", "vgg11", "vgg13", "vgg16", "vgg19")


class ModelConfig(Strict):
    name: str = "cnn"  # one of MODEL_NAMES, or tv:<torchvision name>

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        # A program that registered a model of its own (`alphaprune.models.register`) has the
        # models' module imported: its registry knows that name too.
        models = sys.modules.get("alphaprune.models")
        names = {*MODEL_NAMES, *(models.MODELS if models is not None else ())}
        if not name.startswith("tv:") and name not in names:
            known = Registry("model", hint=", or tv:<torchvision name>")
            known.update(dict.fromkeys(names))
            raise ValueError(known.unknown(name))
        return name


# -------------------------------------------------------------------------------- eval, run
class EvalConfig(Strict):
    # The variant every other is compared with (None: the first variant), and the confidence
    # of every interval; the verdicts hold all comparisons together to 1 - confidence (Holm).
    reference: str | None = None
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95
    tolerance_pp: Annotated[float, Field(ge=0)] = 1.0  # "α held" window, percentage points
    noise_std: Annotated[float, Field(ge=0)] = 0.5  # Gaussian noise for noisy-test accuracy


class TableConfig(Strict):
    # The latency table that variants with `prune.target: latency` plan from (the `table` stage,
    # alphaprune.pipeline.deploy.table): the model timed whole in onnxruntime on the CPU, at
    # `latency.throughput_batch` (or `batch` here) on `latency.threads` threads, then `per`
    # "layer": each layer with weights alone on a grid of its input and output widths, at most
    # `widths` each way; or "group": the model with each channel group narrowed, at most
    # `widths` kept widths per group; widths in steps of `round_to`, each model timed `rounds`
    # times for `seconds`. Per layer, the five models timed whole (the teacher and the four plans
    # the table calibrates and checks itself on) are timed in turns of their own,
    # `whole_rounds` times for `whole_seconds` (unset: as the layers); every prediction scales
    # with them (a table per group ignores both). `exclude`: as the variants' prune.exclude.
    per: Literal["layer", "group"] = "layer"
    batch: PositiveInt | None = None
    round_to: PositiveInt = 8
    widths: Annotated[int, Field(ge=2)] = 8
    seconds: Annotated[float, Field(gt=0)] = 0.1
    rounds: PositiveInt = 3
    whole_seconds: Annotated[float, Field(gt=0)] | None = None
    whole_rounds: PositiveInt | None = None
    exclude: list[str] | None = None


class LatencyConfig(Strict):
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
    # Unset: the `table` stage measures nothing (no variant may target latency); set (`{}` for
    # the defaults) to measure one. Re-measuring it reruns every prune (see README).
    table: TableConfig | None = None

    @model_validator(mode="after")
    def _table_batch_is_timed(self) -> LatencyConfig:
        if self.table and self.table.batch not in (None, self.batch, self.throughput_batch):
            raise ValueError(
                f"table.batch {self.table.batch} is neither latency.batch ({self.batch}) nor "
                f"latency.throughput_batch ({self.throughput_batch}): the latency stage would "
                "not time the students at the batch their target was planned for"
            )
        return self

    def table_batch(self) -> int:
        """The batch the latency table is measured at (and latency targets are met at)."""
        return self.table.batch if self.table and self.table.batch else self.throughput_batch


class RuntimeConfig(Strict):
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


class ReplicatesConfig(Strict):
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


class Params(Strict):
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

    def check_grid(self) -> None:
        """What holds across sections, once the variants are merged over `prune` (the loader
        calls it; a ValueError names the key): every batch splits over the processes, and every
        latency target has the table it plans from."""
        self._batches_split_evenly()
        self._latency_targets_have_a_table()

    def _latency_targets_have_a_table(self) -> None:
        table = self.latency.table
        for name, cfg in self.variants.items():
            if cfg.target != "latency":
                continue
            where = f"variants.{name}"
            if table is None:
                raise ValueError(
                    f"{where}.target: 'latency' plans from a measured latency table: set "
                    "latency.table ({} for the defaults) so that the table stage measures one"
                )
            if cfg.channel_block != table.round_to:
                raise ValueError(
                    f"{where}.round_to: {cfg.channel_block} differs from latency.table.round_to "
                    f"{table.round_to}: a latency plan keeps the widths the table timed; set "
                    "them equal"
                )
            if cfg.exclude != table.exclude:
                raise ValueError(
                    f"{where}.exclude: {cfg.exclude} differs from latency.table.exclude "
                    f"{table.exclude}: the table times the groups of the layers a plan may cut; "
                    "set them equal"
                )

    def _batches_split_evenly(self) -> None:
        n = self.runtime.processes
        sizes = {"teacher": self.teacher.batch_size, "prune": self.prune.batch_size}
        sizes |= {f"variants.{k}": v.batch_size for k, v in self.variants.items()}
        for where, size in sizes.items():
            if size % n:
                raise ValueError(
                    f"{where}.batch_size: {size} does not split evenly over runtime.processes {n}"
                )

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
