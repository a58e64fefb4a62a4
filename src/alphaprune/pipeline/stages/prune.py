"""The prune stage: one variant's recipe applied to the teacher, trained through its α schedule,
collapsed and saved as the student."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from alphaprune import channels, distributed, student
from alphaprune.budget.allocator import allocate
from alphaprune.budget.channels import DEFAULT_RANKING
from alphaprune.budget.latency_table import CHECK_TOLERANCE, LatencyTable
from alphaprune.budget.plan import DROPPING, NARROWING, Plan
from alphaprune.errors import UserError
from alphaprune.fit import DivergenceError, fit
from alphaprune.loading import load_model
from alphaprune.modelfile import recorded_macs, save_model, with_plan
from alphaprune.pipeline.data.prepared import load_data
from alphaprune.pipeline.params.recipe import PruneConfig
from alphaprune.pipeline.params.schema import Params
from alphaprune.pipeline.provenance.codedeps import code_digest
from alphaprune.pipeline.stages.engine import prune_spec, runtime_from, splits
from alphaprune.pipeline.stages.training import Curves, OnEpoch, clean_train_accuracy, generator

log = logging.getLogger(__name__)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_student(
    teacher: nn.Module,
    cfg: PruneConfig,
    example: torch.Tensor,
    calibration=None,
    teacher_macs: int | None = None,
    table: LatencyTable | None = None,
    agree: Callable[[Plan], Plan] = lambda plan: plan,
) -> tuple[nn.Module, Plan]:
    """A copy of `teacher` with every layer `cfg` plans blended with its initialised branch;
    `teacher_macs`, the teacher's MACs if its file records them (else they are counted);
    `table`, the latency table a `target: latency` recipe plans from; `agree`, the plan every
    process of a run builds from this one's (`agreed`)."""
    plan = allocate(
        teacher,
        cfg.branch,
        cfg.amount,
        example,
        cfg.exclude,
        cfg.channel_block,
        cfg.target,
        teacher_macs=teacher_macs,
        table=table,
        ranking=cfg.ranking or DEFAULT_RANKING,
        dropped_blocks=cfg.dropped_blocks,
    )
    plan = agree(plan)
    return student.make_student(teacher, plan, cfg.init, calibration), plan


def agreed(runtime) -> Callable[[Plan], Plan]:
    """The main process's plan, in every process of `runtime`'s run: each plans alone, and a
    near-tie in the float sums a plan compares (a block's damage, a channel's importance) can
    be broken another way on another device, which would build different students."""
    device = runtime.device if runtime.device.type == "cuda" else None

    def agree(plan: Plan) -> Plan:
        if not runtime.world.distributed:
            return plan
        masks = {name: mask.cpu() for name, mask in plan.masks.items()}
        return distributed.same_as_main(
            runtime.world, dataclasses.replace(plan, masks=masks), device
        )

    return agree


def prune(
    params: Params,
    variant: str,
    data_path: Path,
    teacher_path: Path,
    out_dir: Path,
    seed: int = 0,
    on_epoch: OnEpoch = None,
    table_path: Path | None = None,
) -> dict:
    """Prune the teacher with one variant's recipe from `seed`: `out_dir`/student.pt, history.csv,
    steps.csv, and checkpoint/ for resuming a killed run. A `target: latency` recipe plans from
    the latency table at `table_path` (the `table` stage's)."""
    cfg = params.variant(variant)
    table = read_table(table_path) if cfg.target == "latency" else None
    prepared = load_data(data_path)
    runtime = runtime_from(params.runtime)
    teacher, recipe = load_model(teacher_path, runtime.device)
    teacher = runtime.place(teacher)  # float64 in a float64 run: the plan and inits too
    train, val = splits(prepared, runtime, "train", "val")
    torch.manual_seed(seed)
    blocks = cfg.branch in DROPPING  # blocks are chosen by their damage on a calibration batch
    calib = [next(train.batches(cfg.calibration_size))[0]] if cfg.init == "lsq" or blocks else None
    example = calib[0] if blocks else train.examples(2)
    model, plan = make_student(
        teacher, cfg, example, calib, recorded_macs(recipe), table, agreed(runtime)
    )
    log.info(
        "%s: %d layers get %s branches; removes %.4f of %d parameters and %.4f of %d MACs",
        variant,
        len(plan.layers),
        cfg.branch,
        plan.achieved,
        plan.teacher_params,
        plan.macs_achieved,
        plan.teacher_macs,
    )
    if plan.kind in DROPPING:
        log.info("%s: drops the blocks %s", variant, ", ".join(plan.dropped_blocks) or "(none)")
    for split in plan.splits:  # blocks+channels: how the budget's splits between them fared
        log.info(
            "%s: %d block(s) dropped and the rest in channels moved the logits %.4g%s",
            variant,
            len(split["blocks"]),
            split["damage"],
            " (chosen)" if set(split["blocks"]) == set(plan.dropped_blocks) else "",
        )
    if plan.latency:
        log.info(
            "%s: predicted %.4g ms of the teacher's %.4g ms (%.3fx; asked %.3fx) in %s at batch "
            "%d on %d thread(s), channels ranked by %s",
            variant,
            plan.latency["student_ms"],
            plan.latency["teacher_ms"],
            plan.latency["teacher_ms"] / plan.latency["student_ms"],
            1 / (1 - cfg.amount),
            plan.latency["engine"],
            plan.latency["batch"],
            plan.latency["threads"],
            plan.latency["ranking"],
        )
        error = plan.latency.get("table_check_error")
        if error is not None and abs(error) > CHECK_TOLERANCE:
            log.warning(
                "%s: the latency table's check is off: %s", variant, plan.latency["table_check"]
            )
    fits = cfg.budget_fit()
    (log.warning if fits.certain else log.info)("%s", fits.message(variant))
    spec = prune_spec(cfg, _fingerprint(cfg, seed, teacher_path, prepared, table, plan))
    # Declared by dvc.yaml as an output even when the run is one step (oneshot) with nothing
    # to resume from; made only once the inputs have loaded, so a bad input leaves no output.
    (out_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
    curves = Curves(out_dir)
    narrowing: list[dict] | None = None
    if plan.kind in NARROWING:  # at α = 0 the channels leave every layer coupled to them
        narrowing, example = [], train.examples(1)

        def narrow(collapsed: nn.Module) -> None:
            narrowing[:] = channels.narrow_student(collapsed, plan.removed, example)

    try:
        result = fit(
            model,
            train,
            val,
            spec,
            runtime,
            generator(runtime, seed),
            teacher=teacher,
            checkpoint=out_dir / "checkpoint" / "last.pt",
            on_epoch=on_epoch,
            on_update=curves.update,
            on_step=clean_train_accuracy(train, runtime),
            narrow=narrow if narrowing is not None else None,
        )
    except DivergenceError as err:
        raise DivergenceError(f"variant {variant}: {err} (variants.{variant}.optimizer)") from None
    recipe = {
        **with_plan(recipe, plan, narrowing),
        "variant": variant,
        "prune": cfg.model_dump(),
    }
    if runtime.world.main:  # one of a run's processes writes
        save_model(out_dir / "student.pt", model, recipe)
        curves.write(result)
    return {
        "achieved": plan.achieved,
        "macs_achieved": plan.macs_achieved,
        "val_acc": result.history[-1]["val_acc"],
    }


def read_table(path: Path | None) -> LatencyTable:
    """The latency table at `path`, or a UserError saying what to do."""
    if path is None:
        raise UserError("target 'latency' plans from a latency table: give --table FILE")
    return LatencyTable.from_file(path)


def _fingerprint(
    cfg: PruneConfig,
    seed: int,
    teacher_path: Path,
    prepared,
    table: LatencyTable | None,
    plan: Plan | None = None,
) -> str:
    """What a checkpoint must match to be resumed: recipe, seed, teacher, data, the latency
    table it planned from, the code this stage runs (a change to that code reruns the stage,
    and resuming would keep the old code's α > 0 phase; an edit to code the stage does not run,
    e.g. the plots, keeps the checkpoint), and the blocks dropped and channels removed (chosen
    on the device: a near-tie that another device breaks otherwise builds another student, whose
    weights the checkpoint's would not fit, or whose channels its masks would not name; it
    starts over instead)."""
    blob = json.dumps(
        [
            cfg.model_dump(),
            seed,
            file_digest(teacher_path),
            prepared.card["sha256"],
            code_digest("prune"),
            *([table.to_dict()] if table is not None else []),
            *([plan.dropped_blocks] if plan is not None and plan.kind in DROPPING else []),
            *(
                [{root: list(map(int, idxs)) for root, idxs in plan.removed.items()}]
                if plan is not None and plan.kind in NARROWING
                else []
            ),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()
