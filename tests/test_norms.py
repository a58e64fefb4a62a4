"""BatchNorm recalibration: it changes only running statistics, and estimates them as the plain
average over the batches it is given."""

from __future__ import annotations

import torch
from torch import nn

from alphaprune import norms


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.LazyLinear(2),
    )


def test_only_running_statistics_change():
    model = _net()
    model(torch.randn(2, 3, 6, 6))  # materialise the lazy layer
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    used = norms.recalibrate(model, [torch.randn(8, 3, 6, 6) + 2 for _ in range(3)])
    assert used == 3
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    for p in model.parameters():
        assert p.grad is None
    assert not model.training and not model[1].training  # modes restored
    assert model[1].momentum == 0.1


def test_statistics_are_the_average_over_the_batches():
    model = _net()
    batches = [torch.randn(16, 3, 6, 6) * (i + 1) + i for i in range(4)]
    with torch.no_grad():
        inputs = [model[0](x) for x in batches]  # what the BatchNorm layer sees
    norms.recalibrate(model, batches)
    mean = torch.stack([h.mean(dim=(0, 2, 3)) for h in inputs]).mean(0)
    var = torch.stack([h.var(dim=(0, 2, 3), unbiased=True) for h in inputs]).mean(0)
    torch.testing.assert_close(model[1].running_mean, mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model[1].running_var, var, atol=1e-4, rtol=1e-5)
    assert int(model[1].num_batches_tracked) == 4


def test_a_model_without_batchnorm_is_left_alone():
    model = nn.Sequential(nn.Linear(3, 2))
    assert norms.recalibrate(model, [torch.randn(4, 3)]) == 0
