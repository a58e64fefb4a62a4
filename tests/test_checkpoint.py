"""Checkpoints: what a resumed fit needs, refused when unsafe, ignored when foreign."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from alphaprune import checkpoint
from alphaprune.errors import FileFormatError
from alphaprune.fit import FitResult


def _state(seed: int):
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return model, opt, torch.Generator().manual_seed(seed)


def test_resume_restores_model_optimizer_both_streams_and_the_history(tmp_path):
    path = tmp_path / "last.pt"
    model, opt, gen = _state(0)
    result = FitResult([{"epoch": 1}], [{"step": 0}], 2.5)
    checkpoint.save(path, "fp", 1, 1, model, opt, gen, result)
    expected_draw, expected_torch = torch.rand(3, generator=gen), torch.rand(3)

    other, other_opt, other_gen = _state(1)
    torch.manual_seed(99)
    resumed = checkpoint.resume(path, "fp", other, other_opt, other_gen)
    assert (resumed.next_step, resumed.epoch, resumed.seconds) == (1, 1, 2.5)
    assert resumed.history == [{"epoch": 1}] and resumed.steps == [{"step": 0}]
    assert torch.equal(other.weight, model.weight)
    assert other_opt.state_dict()["state"][0]["momentum_buffer"].equal(
        opt.state_dict()["state"][0]["momentum_buffer"]
    )
    assert torch.equal(torch.rand(3, generator=other_gen), expected_draw)
    assert torch.equal(torch.rand(3), expected_torch)


def test_another_configuration_or_version_starts_over(tmp_path, caplog):
    path = tmp_path / "last.pt"
    model, opt, gen = _state(0)
    checkpoint.save(path, "fp", 1, 1, model, opt, gen, FitResult())
    with caplog.at_level(logging.WARNING):
        assert checkpoint.resume(path, "other", model, opt, gen) is None
    assert "another configuration" in caplog.text
    torch.save({"format_version": 99}, path)
    assert checkpoint.resume(path, "fp", model, opt, gen) is None
    assert checkpoint.resume(tmp_path / "none.pt", "fp", model, opt, gen) is None


def test_a_damaged_checkpoint_stops_the_run(tmp_path):
    path = tmp_path / "last.pt"
    model, opt, gen = _state(0)
    checkpoint.save(path, "fp", 1, 1, model, opt, gen, FitResult())
    path.write_bytes(path.read_bytes()[:200])  # truncated after the (atomic) write
    with pytest.raises(FileFormatError, match=r"last\.pt: not a readable checkpoint .*delete it"):
        checkpoint.resume(path, "fp", model, opt, gen)
