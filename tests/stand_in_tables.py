"""A latency table per layer that measures nothing, shared by the tests that plan from one: every
Conv2d and Linear takes inputs × outputs × positions × 1e-6 ms (bilinear, so the grid
interpolates it exactly), and the whole model the sum of its layers (nothing fixed), so a
student's exact time is that sum over the layers it has."""

from __future__ import annotations

import torch
from torch import nn

from alphaprune import channels
from alphaprune.budget.latency_table import LatencyTable
from alphaprune.budget.layer_times import Layer
from alphaprune.costs import layer_positions
from alphaprune.pipeline.deploy.layer_grids import layer_grids

MS_PER_MAC = 1e-6


def stand_in_table(
    model: nn.Module, example: torch.Tensor, exclude: list[str] | None = None
) -> tuple[LatencyTable, dict[str, int]]:
    """The table of `model` (batch 64, round_to 8) for inputs shaped as `example`'s, and each
    layer's output positions (a layer's time is its MACs there × `MS_PER_MAC`)."""
    groups, _ = channels.channel_groups(model, example[:2], exclude)
    positions = layer_positions(model, example[:1])
    grids, _ = layer_grids(model, tuple(example.shape[1:]), groups, 8, 64)
    layers = tuple(
        Layer(**spec, ms={(i, o): MS_PER_MAC * i * o * positions[spec["name"]] for i, o in grid})
        for spec, grid in grids
    )
    full = sum(layer.at(layer.inputs, layer.outputs) for layer in layers)
    widths = {g.root: g.width for g in groups}
    return LatencyTable("stand-in", 64, 1, 8, full, widths, {}, layers=layers), positions
