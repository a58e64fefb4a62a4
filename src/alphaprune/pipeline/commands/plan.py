"""`alphaprune plan`: which layers a budget prunes, and how, without training."""

from __future__ import annotations

import json

import pandas as pd
import torch

from alphaprune.branches.kinds import BRANCHES
from alphaprune.budget.allocator import allocate
from alphaprune.models import build_model
from alphaprune.pipeline.params.recipe import PruneConfig


def add_arguments(p) -> None:
    p.add_argument("--model", required=True)
    defaults = PruneConfig()  # a run's defaults: the best measured recipe
    p.add_argument("--branch", default=defaults.branch, choices=list(BRANCHES))
    p.add_argument("--amount", type=float, default=defaults.amount)
    p.add_argument(
        "--target",
        default=defaults.target,
        choices=["params", "macs"],
        help="what --amount is a fraction of: the teacher's parameters, or its MACs (batch 1)",
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


def run(args) -> None:
    c, h, w = args.input_size
    model = build_model(args.model, args.num_classes, in_channels=c, image_size=h).eval()
    example = torch.zeros(2, c, h, w)
    plan = allocate(
        model, args.branch, args.amount, example, args.exclude, args.round_to, args.target
    )
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2))
        return
    rows = pd.DataFrame(plan.to_dict()["layers"] + plan.to_dict().get("coupled", []))
    # size: rank (lowrank), kept weights (sparse) or kept inputs (a channels reader); a pointwise
    # 1x1 has none, nor a layer that only loses output channels (channels)
    print(rows.fillna("-").to_string(index=False) if len(rows) else "(no layers)")
    print(f"excluded: {', '.join(plan.excluded)}")
    for root, removed in plan.removed.items():
        width = model.get_submodule(root).weight.shape[0]
        print(f"group {root}: keeps {width - len(removed)} of {width} channels")
    for root, why in plan.ungrouped.items():
        print(f"group {root}: not pruned, {why}")
    aim = {"params": "", "macs": ""}
    aim[plan.target] = f" (target {plan.amount})"
    print(
        f"teacher {plan.teacher_params:,} -> student {plan.student_params:,} parameters; "
        f"removes {plan.achieved:.4f}{aim['params']}"
    )
    print(
        f"teacher {plan.teacher_macs:,} -> student {plan.student_macs:,} MACs per example; "
        f"removes {plan.macs_achieved:.4f}{aim['macs']}"
    )
