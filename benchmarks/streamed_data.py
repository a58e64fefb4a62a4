"""Streamed data against resident data (issue 24): training throughput on the CIFAR-10 JPEG
archive, and the streamed path's memory while training on a photo folder too large to decode
into memory.

    python benchmarks/streamed_data.py throughput [--archive ../shared/data/cifar10-jpg.tar.gz]
    python benchmarks/streamed_data.py memory [--images 20000] [--size 256]

`throughput` prepares the archive both ways (resident: decoded into one tensor; streamed: an
index of the gunzipped .tar, each batch read and decoded by DataLoader workers) and times
ResNet-20 training steps (forward, loss, backward, SGD) fed by each, and the feed alone, in
images/s: the best of `--repeats` runs of `--batches` batches each. `memory` writes a folder of
`--images` JPEGs of `--size` px (about N × 3 × size² bytes decoded), prepares it streamed and
trains a small conv net for one epoch on it, sampling the memory of the training process and
its DataLoader workers every 10 batches: resident set (RSS) of the training process, and the
unique memory (USS) of each worker, which is what they add beside it. Run it with nothing else
running.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import torch
from torch import nn

from alphaprune.models import build_model
from alphaprune.pipeline.data.sources import prepare
from alphaprune.pipeline.params.schema import DataConfig
from alphaprune.pipeline.stages.engine import splits
from alphaprune.runtime import Runtime


def _steps(split, batch_size: int, batches: int, step) -> float:
    """Images a second over `batches` batches (after one batch of warm-up)."""
    gen = torch.Generator().manual_seed(0)
    it = split.batches(batch_size, gen)
    step(*next(it)[:2])
    start, n = time.perf_counter(), 0
    for _ in range(batches):
        x, y, _ = next(it)
        step(x, y)
        n += len(y)
    return n / (time.perf_counter() - start)


def _trainer(net: nn.Module):
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    return step


def throughput(args) -> None:
    runtime = Runtime(torch.device("cpu"), workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        tar = Path(tmp) / "cifar10-jpg.tar"
        with gzip.open(args.archive, "rb") as src, open(tar, "wb") as dst:
            shutil.copyfileobj(src, dst)
        forms = {}
        for form, root in (("resident", args.archive), ("streamed", tar)):
            cfg = DataConfig(name="imagefolder", root=str(root), image_size=32, storage=form)
            start = time.perf_counter()
            prepared = prepare(cfg, 0)
            seconds = time.perf_counter() - start
            (forms[form],) = splits(prepared, runtime, "train")
            print(f"prepare {form}: {seconds:.1f} s, {len(forms[form])} training images")
        torch.manual_seed(0)
        net = build_model("resnet20", 10, in_channels=3, image_size=32)
        net = net.to(memory_format=torch.channels_last)
        rows = []
        for name, step in (("feed only", lambda x, y: None), ("training", _trainer(net))):
            best = {f: 0.0 for f in forms}
            for _ in range(args.repeats):  # the forms alternate: a slow moment hits both
                for form, split in forms.items():
                    rate = _steps(split, args.batch_size, args.batches, step)
                    best[form] = max(best[form], rate)
            rows.append((name, best["resident"], best["streamed"]))
    print(
        f"\nimages/s, best of {args.repeats} × {args.batches} batches of {args.batch_size}, "
        f"{torch.get_num_threads()} torch threads, {args.workers} DataLoader workers"
    )
    print(f"{'':<10} {'resident':>10} {'streamed':>10} {'ratio':>7}")
    for name, resident, stream in rows:
        print(f"{name:<10} {resident:>10.0f} {stream:>10.0f} {stream / resident:>7.2f}")


def _write_folder(root: Path, n: int, size: int) -> None:
    """n smooth random JPEGs of size × size in 10 classes (train), and 10 test images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", n), ("test", 10)):
        for i in range(count):
            folder = root / split / f"c{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 256, (size // 32, size // 32, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((size, size), Image.BILINEAR)
            image.save(folder / f"{i:06d}.jpg", quality=90)


def _memory() -> tuple[float, float]:
    """(RSS of this process, summed USS of its children) in GB."""
    me = psutil.Process()
    workers = sum(c.memory_full_info().uss for c in me.children(recursive=True))
    return me.memory_info().rss / 1e9, workers / 1e9


def memory(args) -> None:
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp) / "photos"
        start = time.perf_counter()
        _write_folder(root, args.images, args.size)
        print(f"wrote {args.images} JPEGs of {args.size} px in {time.perf_counter() - start:.0f} s")
        # storage: auto, with a budget the decoded images exceed: streamed
        cfg = DataConfig(
            name="imagefolder", root=str(root), image_size=args.size, memory_gb=args.budget_gb
        )
        prepared = prepare(cfg, 0)
        decoded = len(prepared.labels("train")) * 3 * args.size**2 / 1e9
        print(
            f"prepared {'streamed' if prepared.streamed else 'RESIDENT'} (data.memory_gb "
            f"{args.budget_gb:g}): {decoded:.2f} GB decoded"
        )
        print(f"before training: RSS {_memory()[0]:.2f} GB")
        runtime = Runtime(torch.device("cpu"), workers=args.workers)
        (train,) = splits(prepared, runtime, "train")
        net = nn.Sequential(
            nn.Conv2d(3, 16, 8, stride=8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 10),
        )
        step = _trainer(net)
        samples, start = [], time.perf_counter()
        gen = torch.Generator().manual_seed(0)
        for k, (x, y, _) in enumerate(train.batches(args.batch_size, gen)):
            step(x, y)
            if k % 10 == 0:
                samples.append((k, *_memory()))
        seconds = time.perf_counter() - start
    print(f"one epoch: {k + 1} batches of {args.batch_size} in {seconds:.0f} s")
    print(f"{'batch':>6} {'RSS GB':>7} {'workers USS GB':>15} {'sum':>6}")
    for k, rss, uss in samples:
        print(f"{k:>6} {rss:>7.2f} {uss:>15.2f} {rss + uss:>6.2f}")
    peak = max(rss + uss for _, rss, uss in samples)
    print(f"peak: {peak:.2f} GB while training on {decoded:.1f} GB of decoded images")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--archive", type=Path, default=Path("../shared/data/cifar10-jpg.tar.gz"))
    t.add_argument("--batches", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=256)
    t.add_argument("--repeats", type=int, default=3)
    t.add_argument("--workers", type=int, default=2)
    m = sub.add_parser("memory")
    m.add_argument("--images", type=int, default=20000)
    m.add_argument("--size", type=int, default=256)
    m.add_argument("--batch-size", type=int, default=128)
    m.add_argument("--workers", type=int, default=2)
    m.add_argument("--budget-gb", type=float, default=2.0, help="data.memory_gb")
    m.add_argument("--tmp", type=Path, default=None, help="where to write the folder")
    args = p.parse_args()
    torch.manual_seed(0)
    throughput(args) if args.what == "throughput" else memory(args)


if __name__ == "__main__":
    main()
