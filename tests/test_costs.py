"""MACs: the flop counter's total, and per layer its weights times the positions it runs at."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alphaprune import costs
from alphaprune.costs import count_macs, layer_positions, model_macs
from alphaprune.loading import load_model
from alphaprune.modelfile import recorded_macs
from alphaprune.models import build_model


def test_positions_are_output_pixels_of_a_conv_and_one_for_a_linear():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 32x32 -> 16x16
        nn.Conv2d(8, 4, 1),
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 10),
    )
    positions = layer_positions(model, torch.zeros(5, 3, 32, 32))
    assert positions == {"0": 256, "1": 256, "3": 1}
    assert list(positions) == ["0", "1", "3"]  # the order a forward pass calls them


def test_a_linear_over_tokens_runs_once_per_token():
    assert layer_positions(nn.Linear(4, 2), torch.zeros(3, 7, 4)) == {"": 7}


@pytest.mark.parametrize(("name", "shape"), [("cnn", (1, 8, 8)), ("resnet20", (3, 32, 32))])
def test_the_flop_counter_is_the_sum_of_weights_times_positions(name, shape):
    model = build_model(name, 10, in_channels=shape[0], image_size=shape[1])
    example = torch.zeros(2, *shape)
    modules = dict(model.named_modules())
    positions = layer_positions(model, example)
    by_layer = sum(modules[n].weight.numel() * p for n, p in positions.items())
    assert count_macs(model, example) == by_layer
    assert model.training  # neither changes the model's mode


def test_macs_of_a_conv_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    assert model_macs(conv, (3, 8, 8)) == 8 * 3 * 9 * 8 * 8


def test_a_teacher_file_records_the_macs_the_flop_counter_counts(teacher_dir, monkeypatch):
    """pretrain counts the teacher's MACs once and its file keeps them; evaluate reads them
    (and a student's from its plan, which tests/test_budget.py holds equal to a count of the
    student for every kind) instead of paying the flop counter's 1.5 s of imports again."""
    teacher, recipe = load_model(teacher_dir / "model.pt")
    shape = tuple(recipe["model"]["shape"])
    assert recorded_macs(recipe) == count_macs(teacher, torch.zeros(1, *shape)) > 0
    monkeypatch.setattr(costs, "count_macs", lambda *a: pytest.fail("counted again"))
    assert model_macs(teacher, shape, recipe) == recorded_macs(recipe)
