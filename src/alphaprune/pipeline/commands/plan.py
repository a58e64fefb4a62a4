"""`alphaprune plan`: which layers a budget prunes, and how, without training.

A plan that ranks weights (`channels`, `sparse`) depends on them: `--teacher FILE` plans on the
trained teacher, as the prune will; without one, on `--model`'s init drawn from `--seed`, so the
same command gives the same plan."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from alphaprune.branches.kinds import KINDS
from alphaprune.budget.allocator import allocate
from alphaprune.budget.channels import DEFAULT_RANKING
from alphaprune.budget.latency_table import LatencyTable
from alphaprune.budget.plan import DROPPING
from alphaprune.loading import load_model
from alphaprune.modelfile import is_student
from alphaprune.models import build_model
from alphaprune.pipeline.params.base import ConfigError
from alphaprune.pipeline.params.recipe import PruneConfig

# how many random images the blocks of `blocks` and `blocks+channels` are weighed on here
CALIBRATION = 16


def add_arguments(p) -> None:
    p.add_argument("--model", help="a registered model name (or give --teacher)")
    p.add_argument(
        "--teacher",
        type=Path,
        metavar="FILE",
        help="plan on this trained teacher (a model file; its architecture and input size)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="the init's seed, without --teacher (and the random images blocks are weighed on)",
    )
    defaults = PruneConfig()  # a run's defaults: the best measured recipe
    p.add_argument("--branch", default=defaults.branch, choices=list(KINDS))
    p.add_argument("--amount", type=float, default=defaults.amount)
    p.add_argument(
        "--target",
        default=defaults.target,
        choices=["params", "macs", "latency"],
        help="what --amount is a fraction of: the teacher's parameters, its MACs (batch 1), or "
        "its time in --table (channels)",
    )
    p.add_argument(
        "--table", type=Path, metavar="FILE", help="target latency: `alphaprune table`'s file"
    )
    p.add_argument(
        "--ranking",
        choices=["knapsack", "knapsack_summed", "global"],
        help="target latency: least importance lost for the time saved (knapsack_summed, the "
        "default: each channel's magnitude summed over its group's layers; knapsack: "
        "Torch-Pruning's importance, normalised per group), "
        "or the globally least important channels cut until the table predicts the saving "
        "(global, as Torch-Pruning allocates)",
    )
    p.add_argument(
        "--dropped-blocks",
        type=int,
        metavar="N",
        help="blocks+channels: drop the first N ranked blocks, the rest in channels (default: "
        "the split that moves the logits least)",
    )
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--input-size", type=int, nargs=3, default=[3, 32, 32], metavar=("C", "H", "W"))
    p.add_argument("--exclude", nargs="*", default=None, help="glob patterns of layer names")
    p.add_argument(
        "--round-to",
        type=int,
        default=defaults.channel_block,
        help="channels: kept widths are multiples of this (default: %(default)s; 1: any width)",
    )
    p.add_argument("--json", action="store_true")


def _model(args) -> tuple[torch.nn.Module, tuple[int, int, int], str]:
    """The model to plan on, its input shape, and what its weights are (for the table)."""
    if args.teacher is not None:
        model, recipe = load_model(args.teacher)
        if is_student(recipe):
            raise ConfigError(f"--teacher: {args.teacher} is a student, not a teacher")
        return model, tuple(recipe["model"]["shape"]), f"the trained teacher {args.teacher}"
    if args.model is None:
        raise ConfigError("give --model NAME or --teacher FILE")
    c, h, w = args.input_size
    torch.manual_seed(args.seed)
    model = build_model(args.model, args.num_classes, in_channels=c, image_size=h).eval()
    why = f"{args.model}'s random init, seed {args.seed} (--teacher FILE plans on trained weights)"
    return model, (c, h, w), why


def run(args) -> None:
    model, shape, weights = _model(args)
    example = torch.zeros(2, *shape)
    if args.branch in DROPPING:  # blocks are chosen by how far they move the logits: not on zeros
        generator = torch.Generator().manual_seed(args.seed)
        example = torch.randn(CALIBRATION, *shape, generator=generator)
    table = None
    if args.table is not None:
        table = LatencyTable.from_file(args.table)
    elif args.target == "latency":
        raise ConfigError("--target latency needs --table FILE (made by `alphaprune table`)")
    if args.ranking is not None and args.target != "latency":
        raise ConfigError(
            f"--ranking applies to --target latency only (target {args.target!r} always ranks "
            "channels globally)"
        )
    plan = allocate(
        model,
        args.branch,
        args.amount,
        example,
        args.exclude,
        table.round_to if table and args.target == "latency" else args.round_to,
        args.target,
        table=table,
        ranking=args.ranking or DEFAULT_RANKING,
        dropped_blocks=args.dropped_blocks,
    )
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return
    rows = pd.DataFrame(plan.to_dict()["layers"] + plan.to_dict().get("coupled", []))
    # size: rank (lowrank), kept weights (sparse) or kept inputs (a channels reader); a pointwise
    # 1x1 has none, nor a layer that only loses output channels (channels)
    if "size" in rows:
        rows["size"] = rows["size"].astype("Int64")  # whole numbers, shown as such
    print(rows.astype(object).fillna("-").to_string(index=False) if len(rows) else "(no layers)")
    print(f"excluded: {', '.join(plan.excluded)}")
    print(f"weights: {weights}")
    if args.branch in DROPPING:
        print(
            f"blocks: chosen by their damage on {CALIBRATION} images of random normal pixels "
            f"here (seed {args.seed}), so only indicative; the prune chooses on "
            "prune.calibration_size training images"
        )
    for split in plan.splits:  # blocks+channels: each split of the budget tried
        chosen = " (chosen)" if set(split["blocks"]) == set(plan.dropped_blocks) else ""
        print(
            f"split: {len(split['blocks'])} block(s) dropped ({', '.join(split['blocks']) or '-'})"
            f", the rest in channels: logits moved {split['damage']:.4g}{chosen}"
        )
    for root, removed in plan.removed.items():
        width = model.get_submodule(root).weight.shape[0]
        print(f"group {root}: keeps {width - len(removed)} of {width} channels")
    for root, why in plan.ungrouped.items():
        print(f"group {root}: not pruned, {why}")
    if plan.latency:
        lat = plan.latency
        for root, ms in lat["groups_ms"].items():
            if plan.dropped_blocks:
                print(
                    f"group {root}: the model without the dropped blocks, this group alone "
                    f"narrowed, takes {ms:.3f} ms"
                )
            else:
                print(f"group {root}: the model alone narrowed so takes {ms:.3f} ms")
        print(
            f"teacher {lat['teacher_ms']:.3f} ms -> student {lat['student_ms']:.3f} ms predicted "
            f"({lat['engine']}, batch {lat['batch']}, {lat['threads']} thread(s)): speedup "
            f"{lat['teacher_ms'] / lat['student_ms']:.2f}x, removes "
            f"{1 - lat['student_ms'] / lat['teacher_ms']:.4f} (target {plan.amount})"
        )
        if lat.get("table_fixed"):
            print(
                f"the table takes {100 * lat['table_fixed']:.1f}% of the teacher's time not to "
                "shrink with the layers (its calibration)"
            )
        if lat.get("table_check"):
            print(f"the table's check: {lat['table_check']}")
    aim = {"params": "", "macs": "", "latency": ""}
    aim[plan.target] = f" (target {plan.amount})"
    print(
        f"teacher {plan.teacher_params:,} -> student {plan.student_params:,} parameters; "
        f"removes {plan.achieved:.4f}{aim['params']}"
    )
    print(
        f"teacher {plan.teacher_macs:,} -> student {plan.student_macs:,} MACs per example; "
        f"removes {plan.macs_achieved:.4f}{aim['macs']}"
    )
