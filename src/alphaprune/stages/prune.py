"""The prune stage: one variant's recipe applied to the teacher, trained through its α schedule,
collapsed and saved as the student."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from pathlib import Path

import torch
from torch import nn

from alphaprune import blend, data, lsq
from alphaprune.augment import Augment
from alphaprune.branches import build_branch, init_pretrained
from alphaprune.budget import Plan, allocate
from alphaprune.codedeps import code_digest
from alphaprune.config import Params, PruneConfig
from alphaprune.export import load_model, save_model
from alphaprune.losses import NEEDS_TEACHER, make_loss
from alphaprune.runtime import runtime_from, splits
from alphaprune.schedules import even_steps
from alphaprune.stages import Curves, OnEpoch, generator
from alphaprune.train import DivergenceError, FitSpec, fit

log = logging.getLogger(__name__)


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_student(
    teacher: nn.Module, cfg: PruneConfig, example: torch.Tensor, calibration=None
) -> tuple[nn.Module, Plan]:
    """A copy of `teacher` with every planned layer blended with its initialised branch."""
    plan = allocate(teacher, cfg.branch, cfg.amount, example, cfg.exclude)
    model = copy.deepcopy(teacher)
    branches = {}
    for lp in plan.layers:
        layer = model.get_submodule(lp.name)
        branch = build_branch(layer, lp.branch, lp.size, plan.masks.get(lp.name))
        branches[lp.name] = branch.to(example.device)
        if cfg.init == "pretrained":
            init_pretrained(branch, layer)
    if cfg.init == "lsq":
        pairs = {n: (model.get_submodule(n), b) for n, b in branches.items()}
        lsq.fit(teacher, pairs, calibration)
    blend.insert(model, branches)
    return model, plan


def prune(
    params: Params,
    variant: str,
    data_path: Path,
    teacher_path: Path,
    out_dir: Path,
    seed: int = 0,
    on_epoch: OnEpoch = None,
) -> dict:
    """Prune the teacher with one variant's recipe from `seed`: `out_dir`/student.pt, history.csv,
    steps.csv, and checkpoint/ for resuming a killed run."""
    cfg = params.variant(variant)
    prepared = data.load(data_path)
    runtime = runtime_from(params.runtime)
    teacher, recipe = load_model(teacher_path, runtime.device)
    train, val = splits(prepared, runtime, "train", "val")
    torch.manual_seed(seed)
    calib = [next(train.batches(cfg.calibration_size))[0]] if cfg.init == "lsq" else None
    model, plan = make_student(teacher, cfg, train.normalise(train.x[:2]), calib)
    log.info(
        "%s: %d layers get %s branches; removes %.4f of %d parameters",
        variant,
        len(plan.layers),
        cfg.branch,
        plan.achieved,
        plan.teacher_params,
    )
    loss = cfg.loss.model_dump()
    alphas, step_epochs, batch_anneal = cfg.alphas(), None, None
    if cfg.advance.mode in ("even", "batch"):
        anneal, step_epochs = even_steps(alphas, cfg.epochs - cfg.finetune_epochs)
        if cfg.advance.mode == "batch" and anneal:  # one step per epoch, α moving per batch
            batch_anneal = [a for a in alphas if a > 0]
            anneal = [a for a, n in zip(anneal, step_epochs, strict=True) for _ in range(n)]
            step_epochs = [1] * len(anneal)
        alphas = [*anneal, 0.0]
    fits = cfg.budget_fit()
    (log.warning if fits.certain else log.info)("%s", fits.message(variant))
    spec = FitSpec(
        alphas=alphas,
        step_epochs=step_epochs,
        batch_anneal=batch_anneal,
        epochs=cfg.epochs,
        finetune_epochs=cfg.finetune_epochs,
        advance=cfg.advance,
        batch_size=cfg.batch_size,
        optimizer=cfg.optimizer,
        loss=make_loss(**loss),
        needs_teacher=loss["kind"] in NEEDS_TEACHER,
        augment=Augment(**cfg.augment.model_dump()),
        trainable=cfg.trainable,
        finetune_trainable=cfg.finetune_trainable,
        finetune_lr=cfg.finetune_lr,
        recalibrate_bn=cfg.recalibrate_bn,
        layer_distill=cfg.layer_distill,
        fingerprint=_fingerprint(cfg, seed, teacher_path, prepared),
    )
    # Declared by dvc.yaml as an output even when the run is one step (oneshot) with nothing
    # to resume from; made only once the inputs have loaded, so a bad input leaves no output.
    (out_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
    curves = Curves(out_dir)
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
        )
    except DivergenceError as err:
        raise DivergenceError(f"variant {variant}: {err} (variants.{variant}.optimizer)") from None
    recipe = {
        **recipe,
        "layers": [{"name": lp.name, "branch": lp.branch, "size": lp.size} for lp in plan.layers],
        "plan": plan.to_dict(),
        "variant": variant,
        "prune": cfg.model_dump(),
    }
    save_model(out_dir / "student.pt", model, recipe)
    curves.write(result)
    return {"achieved": plan.achieved, "val_acc": result.history[-1]["val_acc"]}


def _fingerprint(cfg: PruneConfig, seed: int, teacher_path: Path, prepared) -> str:
    """What a checkpoint must match to be resumed: recipe, seed, teacher, data and the code this
    stage runs (a change to that code reruns the stage, and resuming would keep the old code's
    α > 0 phase; an edit to code the stage does not run, e.g. the plots, keeps the checkpoint)."""
    blob = json.dumps(
        [
            cfg.model_dump(),
            seed,
            file_digest(teacher_path),
            prepared.card["sha256"],
            code_digest("prune"),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()
