"""The reference for the fine-tune ablation (issue 37, part 0; docs/results.md): a plain loop, as a
researcher would write it in twenty lines, fine-tuning the same cut the product's `torch_pruning`
variant fine-tunes.

The cut: the teacher's channels removed to `--amount` of its parameters by the product's
allocator with `round_to: 1` (the same channels Torch-Pruning's global group-L2 pruner removes:
tests/test_channels.py checks it), the kept weights as they are, at α = 0 and narrowed. The loop:
SGD with Nesterov momentum 0.9 and weight decay 5e-4 on every parameter, lr `--lr` on a cosine
to 0 stepped every batch, random crop (4 pixels of black padding) and flip on the raw images,
cross-entropy, every batch including the last short one, no gradient clipping, no refit, no
BatchNorm re-estimate. One thread per process.

    python benchmarks/plain_finetune.py --teacher results/teacher/t0/model.pt \
        --data data/prepared/imagefolder.pt --epochs 4 --seeds 0 1 2 --out plain.jsonl

Prints and appends one JSON line per seed: the seed, the student's parameters and its test
accuracy; `--predictions DIR` writes each seed's test predictions as the evaluate stage does.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from alphaprune import blend, channels
from alphaprune.budget.allocator import allocate
from alphaprune.loading import load_model
from alphaprune.pipeline.data.prepared import load_data
from alphaprune.student import make_student


def cut(teacher, amount: float, example):
    """The product's `torch_pruning` start: channels removed, kept weights as they are."""
    plan = allocate(teacher, "channels", amount, example, round_to=1)
    model = make_student(teacher, plan, "pretrained")
    blend.set_alpha(model, 0.0)
    model = blend.collapse(model)
    channels.narrow_student(model, plan.removed, example[:1])
    return model


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random crop of the image zero-padded by 4 (black), then a random flip; on uint8."""
    b, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    tops = torch.randint(0, 9, (b,), generator=g)
    lefts = torch.randint(0, 9, (b,), generator=g)
    flips = torch.rand(b, generator=g) < 0.5
    out = torch.stack(
        [
            padded[i, :, t : t + h, s : s + w]
            for i, (t, s) in enumerate(zip(tops, lefts, strict=True))
        ]
    )
    return torch.where(flips.view(b, 1, 1, 1), out.flip(3), out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--amount", type=float, default=0.65)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--lr", type=float, default=0.02)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--predictions", type=Path, help="a folder: s<seed>.csv (label,pred), as evaluate writes"
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    data = load_data(args.data)
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    x, y = data.split("train")
    x_test, y_test = data.split("test")
    teacher = load_model(args.teacher)[0]
    steps = args.epochs * math.ceil(len(y) / args.batch)  # the cosine's length, in batches
    for seed in args.seeds:
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = cut(teacher, args.amount, (x[:2].float() - mean) / std).train()
        opt = torch.optim.SGD(
            model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4
        )
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / steps))
        )
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            for idx in torch.randperm(len(y), generator=g).split(args.batch):
                xb = (augment(x[idx], g).float() - mean) / std  # pixel units
                loss = F.cross_entropy(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
        with torch.no_grad():
            pred = torch.cat(
                [model((xb.float() - mean) / std).argmax(1) for xb in x_test.split(500)]
            )
        correct = int((pred == y_test).sum())
        if args.predictions:
            args.predictions.mkdir(parents=True, exist_ok=True)
            rows = "".join(
                f"{a},{b}\n" for a, b in zip(y_test.tolist(), pred.tolist(), strict=True)
            )
            (args.predictions / f"s{seed}.csv").write_text("label,pred\n" + rows)
        row = {
            "seed": seed,
            "epochs": args.epochs,
            "lr": args.lr,
            "params": sum(p.numel() for p in model.parameters()),
            "test_acc": correct / len(y_test),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(row), flush=True)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
