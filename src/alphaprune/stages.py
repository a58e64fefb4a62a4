"""The pipeline's stages as functions: prepare, pretrain, prune. Each takes the typed params and
the paths the CLI (or a test) passes in, and writes its outputs atomically. Evaluation lives in
``evaluate.py``."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from alphaprune import blend, data, lsq
from alphaprune.augment import Augment
from alphaprune.branches import build_branch, init_pretrained
from alphaprune.budget import Plan, allocate
from alphaprune.config import AdvanceConfig, Params, PruneConfig, RuntimeConfig
from alphaprune.devices import resolve_device
from alphaprune.export import load_model, recipe_for, save_model
from alphaprune.files import write_csv, write_json
from alphaprune.losses import NEEDS_TEACHER, make_loss
from alphaprune.models import ModelError, build_model
from alphaprune.runtime import DeviceData, Runtime, accuracy
from alphaprune.train import DivergenceError, FitSpec, fit

log = logging.getLogger(__name__)
OnEpoch = Callable[[dict], None] | None


def runtime_from(cfg: RuntimeConfig) -> Runtime:
    return Runtime(resolve_device(cfg.device), cfg.compile, cfg.eval_batch_size,
                   cfg.data_placement, cfg.workers)  # fmt: skip


def splits(prepared: data.Prepared, runtime: Runtime, *names: str) -> list[DeviceData]:
    """The named splits, on the device if all of the prepared data fits there."""
    nbytes = sum(t.numel() * t.element_size() for t in prepared.tensors.values())
    resident = runtime.data_fits(nbytes)
    if not resident:
        log.info("data (%.1f GB) stays in host memory; batches come through a DataLoader "
                 "with %d workers", nbytes / 1e9, runtime.workers)  # fmt: skip
    return [DeviceData(*prepared.split(n), prepared.mean, prepared.std, runtime, resident)
            for n in names]  # fmt: skip


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _generator(runtime: Runtime, seed: int) -> torch.Generator:
    return torch.Generator(device=runtime.device).manual_seed(seed)


# ---------------------------------------------------------------------------------- prepare
def prepare(params: Params, out: Path) -> dict:
    """Decode the dataset once into `out` (.pt) and its card (.json beside it)."""
    prepared = data.prepare(params.data, params.seed)
    data.save(prepared, out)
    return prepared.card


# --------------------------------------------------------------------------------- pretrain
def pretrain(params: Params, data_path: Path, out_dir: Path, on_epoch: OnEpoch = None) -> dict:
    """Train the teacher: `out_dir`/model.pt, metrics.json, history.csv."""
    prepared = data.load(data_path)
    runtime = runtime_from(params.runtime)
    c, h, _ = prepared.shape
    torch.manual_seed(params.seed)
    try:
        model = build_model(params.model.name, prepared.num_classes, in_channels=c, image_size=h)
    except ModelError as err:
        raise ModelError(f"model.name: {err} (the prepared {prepared.card['name']} images are "
                         f"{c}x{h}x{prepared.shape[2]})") from None  # fmt: skip
    model = model.to(runtime.device)
    train, val, test = splits(prepared, runtime, "train", "val", "test")
    t = params.teacher
    spec = FitSpec(
        alphas=[None], epochs=t.epochs, finetune_epochs=0, advance=AdvanceConfig(),
        batch_size=t.batch_size, optimizer=t.optimizer,
        loss=make_loss("ce", label_smoothing=t.label_smoothing),
        augment=Augment(**t.augment.model_dump()),
    )  # fmt: skip
    result = fit(model, train, val, spec, runtime, _generator(runtime, params.seed),
                 on_epoch=on_epoch)  # fmt: skip
    recipe = recipe_for(params.model.name, prepared.num_classes, prepared.shape, prepared.mean,
                        prepared.std, prepared.card["classes"])  # fmt: skip
    save_model(out_dir / "model.pt", model, recipe)
    write_csv(out_dir / "history.csv", result.history)
    last = result.history[-1]
    metrics = {
        "test_acc": accuracy(model, test, runtime),
        "val_acc": last["val_acc"],
        "train_acc": result.steps[-1]["train_acc_clean"],  # un-augmented, like alpha_hold_train
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": len(result.history),
        "wall_time_s": result.seconds,
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics


# ------------------------------------------------------------------------------------ prune
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
    on_epoch: OnEpoch = None,
) -> dict:
    """Prune the teacher with one variant's recipe: `out_dir`/student.pt, history.csv,
    steps.csv, and checkpoint/ for resuming a killed run."""
    cfg = params.variant(variant)
    prepared = data.load(data_path)
    runtime = runtime_from(params.runtime)
    teacher, recipe = load_model(teacher_path, runtime.device)
    train, val = splits(prepared, runtime, "train", "val")
    torch.manual_seed(params.seed)
    calib = [next(train.batches(cfg.calibration_size))[0]] if cfg.init == "lsq" else None
    model, plan = make_student(teacher, cfg, train.normalise(train.x[:2]), calib)
    log.info("%s: %d layers get %s branches; removes %.4f of %d parameters", variant,
             len(plan.layers), cfg.branch, plan.achieved, plan.teacher_params)  # fmt: skip
    loss = cfg.loss.model_dump()
    spec = FitSpec(
        alphas=cfg.alphas(), epochs=cfg.epochs, finetune_epochs=cfg.finetune_epochs,
        advance=cfg.advance, batch_size=cfg.batch_size, optimizer=cfg.optimizer,
        loss=make_loss(**loss), needs_teacher=loss["kind"] in NEEDS_TEACHER,
        augment=Augment(**cfg.augment.model_dump()), trainable=cfg.trainable,
        fingerprint=_fingerprint(cfg, params.seed, teacher_path, prepared),
    )  # fmt: skip
    # Declared by dvc.yaml as an output even when the run is one step (oneshot) with nothing
    # to resume from; made only once the inputs have loaded, so a bad input leaves no output.
    (out_dir / "checkpoint").mkdir(parents=True, exist_ok=True)
    try:
        result = fit(model, train, val, spec, runtime, _generator(runtime, params.seed),
                     teacher=teacher, checkpoint=out_dir / "checkpoint" / "last.pt",
                     on_epoch=on_epoch)  # fmt: skip
    except DivergenceError as err:
        raise DivergenceError(f"variant {variant}: {err} (variants.{variant}.optimizer)") from None
    recipe = {**recipe, "layers": [{"name": lp.name, "branch": lp.branch, "size": lp.size}
                                   for lp in plan.layers], "plan": plan.to_dict(),
              "variant": variant, "prune": cfg.model_dump()}  # fmt: skip
    save_model(out_dir / "student.pt", model, recipe)
    write_csv(out_dir / "history.csv", result.history)
    write_csv(out_dir / "steps.csv", result.steps)
    return {"achieved": plan.achieved, "val_acc": result.history[-1]["val_acc"]}


def _fingerprint(cfg: PruneConfig, seed: int, teacher_path: Path, prepared) -> str:
    """What a checkpoint must match to be resumed: recipe, seed, teacher, data and this code (a
    code change reruns the stage, and resuming would keep the old code's α > 0 phase)."""
    blob = json.dumps([cfg.model_dump(), seed, file_digest(teacher_path),
                       prepared.card["sha256"], _code_digest()], sort_keys=True)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()


def _code_digest() -> str:
    h = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()
