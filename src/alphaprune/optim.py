"""The optimizer of a fit and its learning rate: built from a recipe's optimizer settings,
given parameters as the student changes (the branches' originals joining at α = 0, the narrowed
tensors of a channel student), and the lr over the epochs (`lr_schedule`)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from alphaprune.fitspec import FitSpec, Optimizer


def params_of(opt: torch.optim.Optimizer) -> list[nn.Parameter]:
    return [p for group in opt.param_groups for p in group["params"]]


def make_optimizer(params: list[nn.Parameter], cfg: Optimizer) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            nesterov=cfg.nesterov and cfg.momentum > 0,
            weight_decay=cfg.weight_decay,
        )
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


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
