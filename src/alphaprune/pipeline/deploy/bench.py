"""Benchmarks of the training step, run as ``alphaprune bench`` (results: docs/benchmarks.md).

In one process, on one model, batch size and data set, it measures:

1. training throughput (images/s) of the project's ``fit`` against a minimal hand-written
   PyTorch loop over the same data already normalised on the device (same optimizer, same
   precision and memory format), so the ratio is the overhead of the project's loop;
2. the time of one α-blend training step against the sum of one step of the original network
   and one of the collapsed student (the cost the blend would have if run as two networks);
3. the student's inference latency and MACs against the teacher's.

With ``compile`` (``--compile``) only the project's fit is compiled, not the hand-written loop:
``fit/plain`` then measures what compiling buys, not the loop's overhead.

Every timing goes through ``torch.utils.benchmark`` (which synchronises CUDA) or is bracketed by
an explicit synchronisation, after a warm-up.
"""

from __future__ import annotations

import copy
import platform
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alphaprune import blend, channels
from alphaprune.batches import DeviceData
from alphaprune.branches.base import count_params
from alphaprune.budget.allocator import allocate
from alphaprune.costs import model_macs
from alphaprune.fit import fit
from alphaprune.fitspec import Advance, FitSpec, Optimizer
from alphaprune.losses import make_loss
from alphaprune.models import build_model
from alphaprune.optim import make_optimizer
from alphaprune.pipeline.params.recipe import PruneConfig
from alphaprune.runtime import Runtime
from alphaprune.student import make_student


@dataclass(frozen=True)
class BenchSetup:
    model: str = "resnet20"
    shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10
    n_train: int = 16384  # with batch 256, 64 steps an epoch: enough to time a GPU epoch
    batch_size: int = 256
    epochs: int = 4  # the first is a warm-up and is not counted; the median of the rest
    branch: str = "pointwise"
    seed: int = 0
    min_run_time: float = 1.0  # seconds torch.utils.benchmark repeats each timed statement


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    threads = torch.get_num_threads()
    return f"CPU {platform.processor() or platform.machine()}, {threads} threads"


def synthetic_data(setup: BenchSetup) -> tuple[Tensor, Tensor]:
    """Random uint8 images and labels: throughput does not depend on what the pixels show."""
    gen = torch.Generator().manual_seed(setup.seed)
    x = torch.randint(0, 256, (setup.n_train, *setup.shape), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, setup.num_classes, (setup.n_train,), generator=gen)
    return x, y


def _model(setup: BenchSetup, runtime: Runtime) -> nn.Module:
    torch.manual_seed(setup.seed)
    c, h, _ = setup.shape
    model = build_model(setup.model, setup.num_classes, in_channels=c, image_size=h)
    model = model.to(runtime.device)
    return model.to(memory_format=torch.channels_last) if runtime.cuda else model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# ------------------------------------------------------------------------------- throughput
def fit_throughput(setup: BenchSetup, x: Tensor, y: Tensor, runtime: Runtime) -> float:
    """Images per second of the project's `fit` (teacher training, one α step, no augmentation),
    the median over epochs after the first. Validation is one batch, to time training alone."""
    mean, std = [127.5] * setup.shape[0], [64.0] * setup.shape[0]
    train = DeviceData(x, y, mean, std, runtime)
    val = DeviceData(x[: setup.batch_size], y[: setup.batch_size], mean, std, runtime)
    spec = FitSpec(
        alphas=[None],
        epochs=setup.epochs,
        finetune_epochs=0,
        advance=Advance(),
        batch_size=setup.batch_size,
        optimizer=Optimizer(),
        loss=make_loss("ce"),
    )
    gen = torch.Generator(device=runtime.device).manual_seed(setup.seed)
    result = fit(_model(setup, runtime), train, val, spec, runtime, gen)
    seen = len(train) // setup.batch_size * setup.batch_size
    return seen / statistics.median(r["seconds"] for r in result.history[1:])


def plain_throughput(setup: BenchSetup, x: Tensor, y: Tensor, runtime: Runtime) -> float:
    """Images per second of the loop a user would write by hand: the data normalised once and
    kept on the device as float, a shuffled index per epoch, forward, loss, backward, step."""
    dev = runtime.device
    model = _model(setup, runtime).train()
    opt = make_optimizer(list(model.parameters()), Optimizer())
    xf = ((x.float() - 127.5) / 64.0).to(dev)
    if runtime.cuda:
        xf = xf.contiguous(memory_format=torch.channels_last)
    yd = y.to(dev)
    n = len(yd) // setup.batch_size * setup.batch_size
    times = []
    for _ in range(setup.epochs):
        _sync(dev)
        start = time.perf_counter()
        order = torch.randperm(len(yd), device=dev)
        for i in range(0, n, setup.batch_size):
            idx = order[i : i + setup.batch_size]
            with runtime.autocast():
                loss = F.cross_entropy(model(xf[idx]).float(), yd[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        _sync(dev)
        times.append(time.perf_counter() - start)
    return n / statistics.median(times[1:])


# ------------------------------------------------------------------------------ blend cost
def _step_seconds(
    model: nn.Module, x: Tensor, y: Tensor, runtime: Runtime, min_run: float
) -> float:
    """Median seconds of one training step (forward, backward, SGD step) on one batch."""
    from torch.utils.benchmark import Timer

    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, Optimizer())

    def step():
        with runtime.autocast():
            loss = F.cross_entropy(model(x).float(), y)
        term = blend.distill_loss(model)  # None unless layer-wise distillation is on
        if term is not None:
            loss = loss + term
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    step()  # warm-up: allocations, cuDNN autotuning
    return Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=min_run).median


def blend_cost(
    setup: BenchSetup, x: Tensor, y: Tensor, runtime: Runtime
) -> tuple[dict, nn.Module, nn.Module]:
    """One training step of the blended model (α = 0.5) against one step of the original plus
    one of the collapsed student, each training all its weights; and the blended step of the
    default recipe, where only the branches train (no weight gradients for the rest), without
    and with the layer-wise distillation term (which runs each blended layer unfused).
    Returns the timings, the teacher and the collapsed student."""
    teacher = _model(setup, runtime)
    xb = ((x[: setup.batch_size].float() - 127.5) / 64.0).to(runtime.device)
    if runtime.cuda:
        xb = xb.contiguous(memory_format=torch.channels_last)
    yb = y[: setup.batch_size].to(runtime.device)
    plan = allocate(teacher, setup.branch, PruneConfig().amount, xb[:2])
    blended = make_student(teacher, plan, init="pretrained")
    blend.set_alpha(blended, 0.5)
    student = copy.deepcopy(blended)
    blend.set_alpha(student, 0.0)
    blend.collapse(student)
    if plan.removed:  # channels: the student the prune makes is physically narrower
        channels.narrow_student(student, plan.removed, xb[:1])
    student.requires_grad_(True)
    t_orig = _step_seconds(teacher, xb, yb, runtime, setup.min_run_time)
    t_student = _step_seconds(student, xb, yb, runtime, setup.min_run_time)
    blend.set_trainable(blended, "all")
    t_blend = _step_seconds(blended, xb, yb, runtime, setup.min_run_time)
    blend.set_trainable(blended, "branches")
    t_branches = _step_seconds(blended, xb, yb, runtime, setup.min_run_time)
    blend.set_distill(blended, True)  # layer-wise distillation: each blend runs unfused
    t_distill = _step_seconds(blended, xb, yb, runtime, setup.min_run_time)
    blend.set_distill(blended, False)
    return (
        {
            "step_ms_original": 1e3 * t_orig,
            "step_ms_student": 1e3 * t_student,
            "step_ms_blend": 1e3 * t_blend,
            "step_ms_blend_branches_only": 1e3 * t_branches,
            "step_ms_blend_branches_distill": 1e3 * t_distill,
            "blend_over_sum": t_blend / (t_orig + t_student),
        },
        teacher,
        student,
    )


# -------------------------------------------------------------------------------- inference
def inference_ms(model: nn.Module, x: Tensor, runtime: Runtime, min_run: float = 1.0) -> float:
    from torch.utils.benchmark import Timer

    model.eval()

    def forward():
        with torch.no_grad(), runtime.autocast():
            model(x)

    forward()
    return 1e3 * Timer("f()", globals={"f": forward}).blocked_autorange(min_run_time=min_run).median


def run(setup: BenchSetup, runtime: Runtime, x: Tensor | None = None, y: Tensor | None = None):
    """Every measurement, as one flat dict of numbers (plus the device's name)."""
    if x is None:
        x, y = synthetic_data(setup)
    out: dict = {
        "device": device_name(runtime.device),
        "model": setup.model,
        "batch_size": setup.batch_size,
        "n_train": len(y),
    }
    out["fit_img_s"] = fit_throughput(setup, x, y, runtime)
    out["plain_img_s"] = plain_throughput(setup, x, y, runtime)
    out["fit_over_plain"] = out["fit_img_s"] / out["plain_img_s"]
    cost, teacher, student = blend_cost(setup, x, y, runtime)
    out |= cost
    xb = ((x[: setup.batch_size].float() - 127.5) / 64.0).to(runtime.device)
    out["teacher_infer_ms"] = inference_ms(teacher, xb, runtime, setup.min_run_time)
    out["student_infer_ms"] = inference_ms(student, xb, runtime, setup.min_run_time)
    out["student_over_teacher_latency"] = out["student_infer_ms"] / out["teacher_infer_ms"]
    out["teacher_macs"] = model_macs(teacher, setup.shape)
    out["student_macs"] = model_macs(student, setup.shape)
    out["student_over_teacher_macs"] = out["student_macs"] / out["teacher_macs"]
    out["teacher_params"] = count_params(teacher)
    out["student_params"] = count_params(student)
    return out
