"""The optimizer of a fit and its learning rate: built from a recipe's optimizer settings,
given parameters as the student changes (the branches' originals joining at α = 0, the narrowed
tensors of a channel student), and the lr over the epochs (`lr_schedule`)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import nn

from alphaprune.fitspec import FitSpec, Optimizer

# The methods torch marks as never to be compiled (`torch._disable_dynamo`): the wrapper imports
# torch._dynamo at its first call, 1.3 s of CPU in a process that compiles nothing.
_NOT_COMPILED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def _uncompiled(base: type[torch.optim.Optimizer]) -> tuple[Callable, ...]:
    """`base`'s step and _NOT_COMPILED methods, in that order, as torch runs them outside
    `torch.compile`, without the wrappers that tell torch.compile to skip them: those import
    torch._dynamo, the step's on every call (`torch.optim.optimizer`'s
    `_use_grad_for_differentiable`), and the constructor calls add_param_group. The same code
    runs on the same tensors, so the updates are bitwise those of `base` (tests/test_optim.py).
    The fit compiles the model, never the optimizer (`runtime.compile`)."""
    raw_step = inspect.unwrap(base.step)

    def step(self, closure=None):
        # what the step's wrapper does besides importing torch._dynamo for its graph breaks
        with torch.set_grad_enabled(self.defaults["differentiable"]):
            return raw_step(self, closure)

    step.__doc__ = raw_step.__doc__
    return (step, *(inspect.unwrap(getattr(base, name)) for name in _NOT_COMPILED))


class SGD(torch.optim.SGD):
    """`torch.optim.SGD`, stepped without importing torch._dynamo (`_uncompiled`)."""

    step, add_param_group, zero_grad, state_dict, load_state_dict = _uncompiled(torch.optim.SGD)


class AdamW(torch.optim.AdamW):
    """`torch.optim.AdamW`, stepped without importing torch._dynamo (`_uncompiled`)."""

    step, add_param_group, zero_grad, state_dict, load_state_dict = _uncompiled(torch.optim.AdamW)


def params_of(opt: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for group in opt.param_groups for p in group["params"]]


def make_optimizer(params: list[nn.Parameter], cfg: Optimizer) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    return AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def train_also(opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
    """Give `opt` the parameters it does not hold yet, as a group with its defaults (those it
    holds keep their momentum; those now frozen get no gradient, so SGD and AdamW skip them)."""
    held = {id(p) for p in params_of(opt)}
    new = [p for p in params if id(p) not in held]
    if new:
        opt.add_param_group({"params": new})


def rebuilt(opt: torch.optim.Optimizer, model: nn.Module, spec: FitSpec):
    """A new optimizer over `model`'s trainable parameters; those `opt` held keep their state
    (momentum), the new ones (narrowed tensors) start afresh."""
    params = [p for p in model.parameters() if p.requires_grad]
    new = make_optimizer(params, spec.optimizer)
    for p in params:
        if p in opt.state:
            new.state[p] = opt.state[p]
    return new


def lr_schedule(spec: FitSpec, final: bool, epoch: int, e: int, n: int) -> Callable[[float], float]:
    """lr as a function of the fraction of an epoch done, for the `epoch`-th epoch of the fit
    (from 0), the `e`-th of its step of `n`. restart: constant at optimizer.lr while α moves,
    then a cosine from finetune_lr (or optimizer.lr) to 0 over the final step; cosine: one
    cosine from optimizer.lr to 0 over all of the fit's epochs, α > 0 and α = 0 alike."""
    if spec.lr_schedule == "cosine":
        peak, total = spec.optimizer.lr, spec.epochs
        return lambda frac: peak * 0.5 * (1 + math.cos(math.pi * (epoch + frac) / total))
    if spec.lr_schedule != "restart":
        raise ValueError(f"lr_schedule must be 'restart' or 'cosine', got {spec.lr_schedule!r}")
    if not final:
        return lambda frac: spec.optimizer.lr
    peak = spec.finetune_lr or spec.optimizer.lr
    return lambda frac: peak * 0.5 * (1 + math.cos(math.pi * (e + frac) / n))
