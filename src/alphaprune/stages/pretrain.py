"""The pretrain stage: train the teacher."""

from __future__ import annotations

from pathlib import Path

import torch

from alphaprune import data
from alphaprune.augment import Augment
from alphaprune.config import AdvanceConfig, Params
from alphaprune.export import recipe_for, save_model
from alphaprune.files import write_json
from alphaprune.losses import make_loss
from alphaprune.models import ModelError, build_model
from alphaprune.runtime import accuracy, runtime_from, splits
from alphaprune.stages import Curves, OnEpoch, generator
from alphaprune.train import FitSpec, fit


def pretrain(
    params: Params, data_path: Path, out_dir: Path, seed: int = 0, on_epoch: OnEpoch = None
) -> dict:
    """Train a teacher from `seed`: `out_dir`/model.pt, metrics.json, history.csv."""
    prepared = data.load(data_path)
    runtime = runtime_from(params.runtime)
    c, h, _ = prepared.shape
    torch.manual_seed(seed)
    try:
        model = build_model(params.model.name, prepared.num_classes, in_channels=c, image_size=h)
    except ModelError as err:
        raise ModelError(
            f"model.name: {err} (the prepared {prepared.card['name']} images are "
            f"{c}x{h}x{prepared.shape[2]})"
        ) from None
    model = model.to(runtime.device)
    train, val, test = splits(prepared, runtime, "train", "val", "test")
    t = params.teacher
    spec = FitSpec(
        alphas=[None],
        epochs=t.epochs,
        finetune_epochs=0,
        advance=AdvanceConfig(),
        batch_size=t.batch_size,
        optimizer=t.optimizer,
        loss=make_loss("ce", label_smoothing=t.label_smoothing),
        augment=Augment(**t.augment.model_dump()),
    )
    curves = Curves(out_dir, steps=False)
    result = fit(
        model,
        train,
        val,
        spec,
        runtime,
        generator(runtime, seed),
        on_epoch=on_epoch,
        on_update=curves.update,
    )
    recipe = recipe_for(
        params.model.name,
        prepared.num_classes,
        prepared.shape,
        prepared.mean,
        prepared.std,
        prepared.card["classes"],
    )
    save_model(out_dir / "model.pt", model, recipe)
    curves.write(result)
    last = result.history[-1]
    metrics = {
        "test_acc": accuracy(model, test, runtime),
        "val_acc": last["val_acc"],
        "train_acc": result.steps[-1]["train_acc_clean"],  # un-augmented, like alpha_hold_train
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": len(result.history),
        "seed": seed,
        "wall_time_s": result.seconds,
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics
