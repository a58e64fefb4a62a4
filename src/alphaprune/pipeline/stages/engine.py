"""The engine's objects built from the params schema.

Each engine type (`Augment`, `Optimizer`, `Advance`, `Runtime`) has a config class in the
params schema (`params.recipe`, `params.schema`) with the same fields and defaults (written out
there, so that the schema imports no torch; tests/pipeline/stages/test_engine.py holds them
equal) and validation; `build` turns one into the other by field name, so a field the two do not
share fails loudly instead of being dropped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, TypeVar

from pydantic import BaseModel

from alphaprune import distributed, schedules, world
from alphaprune.augment import Augment
from alphaprune.batches import DeviceData, Split
from alphaprune.devices import resolve_device
from alphaprune.errors import FileFormatError
from alphaprune.fitspec import Advance, FitSpec, Optimizer
from alphaprune.losses import NEEDS_TEACHER, make_loss
from alphaprune.pipeline.data.prepared import Prepared
from alphaprune.pipeline.params.recipe import PruneConfig, TeacherConfig
from alphaprune.pipeline.params.schema import RuntimeConfig
from alphaprune.runtime import Runtime
from alphaprune.streamed import StreamedData

log = logging.getLogger(__name__)
T = TypeVar("T")


def build(engine_type: type[T], cfg: BaseModel, **values: Any) -> T:
    """An `engine_type` (a dataclass) from `cfg`'s fields of the same names; `values` give or
    replace fields the config holds in another form (e.g. the resolved device)."""
    fields = {f.name for f in dataclasses.fields(engine_type)}
    given = {**cfg.model_dump(), **values}
    if set(given) != fields:
        raise TypeError(
            f"{type(cfg).__name__} and {engine_type.__name__} disagree on fields: "
            f"{sorted(set(given) ^ fields)}"
        )
    return engine_type(**given)


def teacher_spec(cfg: TeacherConfig) -> FitSpec:
    """The teacher's fit: one step with no α, every epoch a cosine to zero."""
    return FitSpec(
        alphas=[None],
        epochs=cfg.epochs,
        finetune_epochs=0,
        advance=Advance(),
        batch_size=cfg.batch_size,
        optimizer=build(Optimizer, cfg.optimizer),
        loss=make_loss("ce", label_smoothing=cfg.label_smoothing),
        augment=build(Augment, cfg.augment),
    )


def prune_spec(cfg: PruneConfig, fingerprint: str = "") -> FitSpec:
    """A variant's fit: its schedule's α steps (see `schedules.fit_steps`), then α = 0."""
    alphas, step_epochs, batch_anneal = schedules.fit_steps(
        cfg.alphas(), cfg.advance.mode, cfg.epochs - cfg.finetune_epochs
    )
    loss = cfg.loss.model_dump()
    return FitSpec(
        alphas=alphas,
        step_epochs=step_epochs,
        batch_anneal=batch_anneal,
        epochs=cfg.epochs,
        finetune_epochs=cfg.finetune_epochs,
        advance=build(Advance, cfg.advance),
        batch_size=cfg.batch_size,
        optimizer=build(Optimizer, cfg.optimizer),
        loss=make_loss(**loss),
        needs_teacher=loss["kind"] in NEEDS_TEACHER,
        augment=build(Augment, cfg.augment),
        trainable=cfg.trainable,
        finetune_trainable=cfg.finetune_trainable,
        finetune_lr=cfg.finetune_lr,
        lr_schedule=cfg.lr_schedule,
        recalibrate_bn=cfg.recalibrate_bn,
        layer_distill=cfg.layer_distill,
        fingerprint=fingerprint,
    )


def runtime_from(cfg: RuntimeConfig) -> Runtime:
    """The `Runtime` a params file's `runtime` section asks for (claiming a GPU if `auto`); in
    one of a run's several processes, its own GPU, and the run's process group joined."""
    rank = world.environment()
    local = rank.local_rank if rank.distributed else None
    device = resolve_device(cfg.device, cfg.jobs_per_gpu, local_rank=local)
    return build(Runtime, cfg, device=device, world=distributed.join(device))


def splits(prepared: Prepared, runtime: Runtime, *names: str) -> list[Split]:
    """The named splits: streamed from their files where the data was prepared so, else on the
    device if all of the prepared data fits there, else in host memory."""
    if prepared.streamed:
        if not os.path.exists(prepared.card["root"]):
            raise FileFormatError(
                f"the prepared data streams its images from {prepared.card['root']}, which is not "
                "there (moved, or prepared on another machine): re-run `alphaprune prepare`"
            )
        log.info(
            "images stream from %s: %d DataLoader workers read and decode each batch",
            prepared.card["root"],
            runtime.workers,
        )
        return [_streamed(prepared, runtime, n) for n in names]
    nbytes = sum(t.numel() * t.element_size() for t in prepared.tensors.values())
    resident = runtime.data_fits(nbytes)
    if not resident:
        log.info(
            "data (%.1f GB) stays in host memory; batches come through a DataLoader "
            "with %d workers",
            nbytes / 1e9,
            runtime.workers,
        )
    return [
        DeviceData(*prepared.split(n), prepared.mean, prepared.std, runtime, resident)
        for n in names
    ]


def _streamed(prepared: Prepared, runtime: Runtime, name: str) -> StreamedData:
    """Split `name` streamed from its files; on CUDA, JPEGs are decoded there (nvJPEG, batched)
    rather than by the DataLoader's workers on the CPU."""
    files = prepared.files(name)
    decode_on = runtime.device if runtime.cuda and files.jpeg_only else None
    if decode_on is not None:
        log.info("%s: JPEGs decoded on %s, a batch at a time", name, decode_on)
    labels = prepared.labels(name)
    return StreamedData(
        files,
        labels,
        prepared.mean,
        prepared.std,
        runtime,
        shape=prepared.shape,
        decode_on=decode_on,
    )
