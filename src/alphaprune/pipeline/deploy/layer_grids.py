"""What a latency table per layer times (`deploy.table`, per "layer"): each Conv2d and Linear
of a model alone, on the input it gets in the network, freshly made at each point of a grid of
its input and output widths (the widths its channel groups can take, in steps of `round_to`, at
most `widths` each way, spread evenly); layers of one shape on one input are one model."""

from __future__ import annotations

import collections
import itertools

import torch
from torch import nn

from alphaprune.budget.latency_table import candidate_widths
from alphaprune.budget.plan import BudgetError
from alphaprune.channels import ChannelGroup


def sampled(widths: list[int], most: int) -> list[int]:
    """At most `most` of the candidate `widths` (ascending), evenly spread, always with the
    least (the table cannot extrapolate below its narrowest timing)."""
    if len(widths) <= most:
        return widths
    picks = {round(i * (len(widths) - 1) / (most - 1)) for i in range(most)}
    return [widths[i] for i in sorted(picks)]


def layer_inputs(model: nn.Module, shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """(name, the shape of its input, no batch) for each call of a Conv2d or Linear of `model`,
    in the order they run (a layer called twice is listed twice)."""
    calls, hooks = [], []

    def record(name):
        def hook(module, args) -> None:  # returns nothing: the input stays as it is
            calls.append((name, tuple(args[0].shape[1:])))

        return hook

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_pre_hook(record(name)))
    try:
        with torch.no_grad():  # batch 2, as the tracer's: a model may squeeze a batch of 1
            model.eval()(torch.zeros(2, *shape))
    finally:
        for h in hooks:
            h.remove()
    return calls


def resized(layer: nn.Module, inputs: int, outputs: int, tied: bool = False) -> nn.Module:
    """A fresh layer like `layer` (a Conv2d or Linear) with `inputs` and `outputs` features
    (`tied`: a depthwise conv, one group per channel)."""
    bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        return nn.Linear(inputs, outputs, bias=bias).eval()
    return nn.Conv2d(
        inputs,
        outputs,
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.dilation,
        groups=inputs if tied else layer.groups,
        bias=bias,
        padding_mode=layer.padding_mode,
    ).eval()


def _points(full: int, per_channel: dict[str, int], widths: dict[str, int], round_to, most):
    """The widths at which a layer dimension of `full` features is timed: fed by no group,
    `full` alone; by one, the features at its sampled kept widths; by several, `most` evenly
    spread between the least they can leave and `full`."""
    if not per_channel:
        return [full]
    if len(per_channel) == 1:
        ((r, n),) = per_channel.items()
        kept = sampled(candidate_widths(widths[r], round_to), most)
        return [full - (widths[r] - k) * n for k in kept]
    least = full - sum(
        (widths[r] - candidate_widths(widths[r], round_to)[0]) * n for r, n in per_channel.items()
    )
    return sorted({round(least + j * (full - least) / (most - 1)) for j in range(most)})


def layer_grids(model, shape, groups: list[ChannelGroup], round_to: int, most: int):
    """For each call of a layer with weights: its `Layer` fields but the timings, and its grid,
    (inputs, outputs) -> the key of the layer to time there; and the distinct layers to time,
    key -> (layer, its input's shape)."""
    widths = {g.root: g.width for g in groups}
    reads: dict[str, dict[str, int]] = {}
    writes: dict[str, dict[str, int]] = {}
    tied: set[str] = set()
    for g in groups:
        for m in g.members:
            if not (m.reads or m.writes or m.tied):
                continue  # a BatchNorm: no layer of its own
            n = m.per_channel()
            if n is None:
                raise BudgetError(
                    f"{m.module} reads part of group {g.root}'s channels (a split or chunk): a "
                    "table per layer cannot tell which of its inputs a plan removes; measure "
                    "the table per group (latency.table.per: group, or --per group)"
                )
            if m.tied:
                tied.add(m.module)
            if m.reads or m.tied:
                reads.setdefault(m.module, {}).setdefault(g.root, 0)
                reads[m.module][g.root] += n
            if m.writes or m.tied:
                writes.setdefault(m.module, {}).setdefault(g.root, 0)
                writes[m.module][g.root] += n
    grids, distinct, seen = [], {}, collections.Counter()
    for name, inp in layer_inputs(model, shape):
        seen[name] += 1
        layer = model.get_submodule(name)
        full_in, full_out = inp[-1 if isinstance(layer, nn.Linear) else 0], layer.weight.shape[0]
        r, w = reads.get(name, {}), writes.get(name, {})
        ins = _points(full_in, r, widths, round_to, most)
        outs = ins if name in tied else _points(full_out, w, widths, round_to, most)
        cells = zip(ins, outs, strict=True) if name in tied else itertools.product(ins, outs)
        grid = {}
        for i, o in cells:
            at = (*inp[:-1], i) if isinstance(layer, nn.Linear) else (i, *inp[1:])
            fresh = resized(layer, i, o, name in tied)
            key = (repr(fresh), at)  # the layer's type and every setting, and its input
            distinct.setdefault(key, (fresh, at))
            grid[i, o] = key
        spec = dict(
            name=name if seen[name] == 1 else f"{name}#{seen[name]}",  # its second call: #2
            inputs=full_in,
            outputs=full_out,
            reads=r,
            writes=w,
            tied=name in tied,
        )
        grids.append((spec, grid))
    return grids, distinct
