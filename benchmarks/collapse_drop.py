"""The drop at α = 0, measured after the fact for runs made before steps.csv recorded
`val_acc_start`: each replicate's checkpoint holds the blended model after its last α > 0 step;
this collapses it (and re-estimates BatchNorm statistics where the recipe does), and prints the
validation accuracy before any fine-tuning beside the step's own. One row per replicate, e.g.

    python benchmarks/collapse_drop.py --params params.yaml configs/cifar10-cpu.yaml \
        configs/shared-jpeg.yaml configs/cifar10-ablation.yaml

The recalibration draws its batches from its own generator, not the run's: its figure is that
of an equivalent draw, not the identical one (new runs record the identical one themselves).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd
import torch

from alphaprune import blend, norms
from alphaprune.batches import accuracy
from alphaprune.loading import load_model
from alphaprune.pipeline.data.prepared import load_data
from alphaprune.pipeline.params.loader import load_params
from alphaprune.pipeline.stages.engine import runtime_from, splits
from alphaprune.pipeline.stages.prune import make_student


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", nargs="+", type=Path, default=[Path("params.yaml")])
    p.add_argument("--results", type=Path, default=Path("results"))
    args = p.parse_args()
    params = load_params(args.params)
    runtime = runtime_from(params.runtime)
    prepared = load_data(Path("data/prepared") / f"{params.data.name}.pt")
    train, val = splits(prepared, runtime, "train", "val")
    rows = []
    for name, cfg in params.variants.items():
        for teacher_seed, seed in params.replicates.runs():
            run = args.results / "variants" / name / f"t{teacher_seed}-s{seed}"
            ckpt = run / "checkpoint" / "last.pt"
            if not ckpt.exists() or not (run / "student.pt").exists():  # one-shot, or running
                continue
            teacher, _ = load_model(
                args.results / "teacher" / f"t{teacher_seed}" / "model.pt", runtime.device
            )
            # the architecture only: the checkpoint's weights replace whatever init builds
            shape = cfg.model_copy(update={"init": "random"})
            model, _ = make_student(teacher, shape, train.examples(2))
            model.load_state_dict(torch.load(ckpt, weights_only=True)["model"])
            steps = pd.read_csv(run / "steps.csv")
            before = steps.loc[steps["alpha"] > 0, "val_acc"].iloc[-1]
            blend.set_alpha(model, 0.0)
            blend.collapse(model)
            collapsed = accuracy(model, val, runtime)
            recalibrated = None
            if cfg.recalibrate_bn:
                gen = torch.Generator(device=runtime.device).manual_seed(seed)
                batches = itertools.islice(train.batches(cfg.batch_size, gen), cfg.recalibrate_bn)
                norms.recalibrate(model, (x for x, _, _ in batches))
                recalibrated = accuracy(model, val, runtime)
            rows.append(
                {
                    "variant": name,
                    "replicate": run.name,
                    "last α > 0": steps.loc[steps["alpha"] > 0, "alpha"].iloc[-1],
                    "val there": before,
                    "val at α=0": collapsed,
                    "recalibrated": recalibrated,
                    "after fine-tune": steps["val_acc"].iloc[-1],
                }
            )
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".4f"))
    means = table.groupby("variant", sort=False).mean(numeric_only=True)
    print()
    print(means.to_markdown(floatfmt=".4f"))


if __name__ == "__main__":
    main()
