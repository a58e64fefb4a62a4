"""The pretrain stage: train the teacher."""

from __future__ import annotations

from pathlib import Path

import torch

from alphaprune.batches import accuracy
from alphaprune.branches.base import count_params
from alphaprune.costs import count_macs
from alphaprune.files import write_json
from alphaprune.fit import fit
from alphaprune.modelfile import recipe_for, save_model
from alphaprune.models import ModelError, build_model
from alphaprune.pipeline.data.prepared import load_data
from alphaprune.pipeline.params.schema import Params
from alphaprune.pipeline.stages.engine import runtime_from, splits, teacher_spec
from alphaprune.pipeline.stages.training import Curves, OnEpoch, clean_train_accuracy, generator


def pretrain(
    params: Params, data_path: Path, out_dir: Path, seed: int = 0, on_epoch: OnEpoch = None
) -> dict:
    """Train a teacher from `seed`: `out_dir`/model.pt, metrics.json, history.csv."""
    prepared = load_data(data_path)
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
    model = runtime.place(model)
    train, val, test = splits(prepared, runtime, "train", "val", "test")
    spec = teacher_spec(params.teacher)
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
        on_step=clean_train_accuracy(train, runtime),
    )
    recipe = recipe_for(
        params.model.name,
        prepared.num_classes,
        prepared.shape,
        prepared.mean,
        prepared.std,
        prepared.card["classes"],
        macs=count_macs(model, torch.zeros(1, *prepared.shape, dtype=runtime.dtype)),
    )
    last = result.history[-1]
    metrics = {
        "test_acc": accuracy(model, test, runtime),
        "val_acc": last["val_acc"],
        "train_acc": result.steps[-1]["train_acc_clean"],  # un-augmented, like alpha_hold_train
        "params": count_params(model),
        "epochs": len(result.history),
        "seed": seed,
        "wall_time_s": result.seconds,
    }
    if runtime.world.main:  # one of a run's processes writes
        save_model(out_dir / "model.pt", model, recipe)
        curves.write(result)
        write_json(out_dir / "metrics.json", metrics)
    return metrics
