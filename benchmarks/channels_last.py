"""One training step on the CPU, NCHW against channels_last (NHWC): the plain teachers and the
α-blended students the prune phase trains (α = 0.5, 65% of the parameters replaced).

    python benchmarks/channels_last.py [--threads 1] [--repeats 3]

A step is forward, cross-entropy, backward and an SGD step with momentum, the fit loop's work
without its bookkeeping; the figure is the best of `--repeats` means over a few steps each (the
two layouts alternate, so a slow moment hits both). Run it with nothing else running.
"""

from __future__ import annotations

import argparse
import time

import torch

from alphaprune import blend
from alphaprune.budget.allocator import allocate
from alphaprune.models import build_model
from alphaprune.student import make_student

# (model, input shape, batch, steps timed)
CASES = [
    ("cnn", (1, 8, 8), 64, 100),
    ("resnet20", (3, 32, 32), 64, 4),
    ("resnet56", (3, 32, 32), 32, 3),
    ("vgg16", (3, 32, 32), 32, 3),
    ("tv:mobilenet_v2", (3, 32, 32), 32, 3),
]


def model(name: str, shape: tuple[int, ...], branch: str | None) -> torch.nn.Module:
    torch.manual_seed(0)
    teacher = build_model(name, num_classes=10, in_channels=shape[0], image_size=shape[1])
    if branch is None:
        return teacher
    student = make_student(teacher, allocate(teacher, branch, 0.65, torch.randn(2, *shape)))
    blend.set_alpha(student, 0.5)
    return student


def step_ms(net: torch.nn.Module, x: torch.Tensor, steps: int) -> float:
    y = torch.randint(0, 10, (x.shape[0],))
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.01, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    step()  # warm-up: allocations, oneDNN primitives
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), best of {args.repeats}")
    print(f"{'model':16s} {'layers':10s} {'NCHW ms':>9s} {'NHWC ms':>9s} {'NHWC/NCHW':>10s}")
    for name, shape, batch, steps in CASES:
        for branch in (None, "pointwise", "lowrank"):
            best = {False: float("inf"), True: float("inf")}
            for _ in range(args.repeats):
                for nhwc in (False, True):
                    net, x = model(name, shape, branch), torch.randn(batch, *shape)
                    if nhwc:
                        net = net.to(memory_format=torch.channels_last)
                        x = x.contiguous(memory_format=torch.channels_last)
                    best[nhwc] = min(best[nhwc], step_ms(net, x, steps))
            layers = branch or "teacher"
            ratio = best[True] / best[False]
            print(f"{name:16s} {layers:10s} {best[False]:9.2f} {best[True]:9.2f} {ratio:10.2f}")


if __name__ == "__main__":
    main()
