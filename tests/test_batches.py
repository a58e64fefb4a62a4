"""Runtime and DeviceData: where the data lives, and that every placement yields the same
normalised batches in the same order."""

from __future__ import annotations

import pytest
import torch

from alphaprune.batches import DeviceData, accuracy, predict
from alphaprune.runtime import Runtime

CPU = Runtime(torch.device("cpu"))


def _data(runtime=CPU, n=70, resident=True) -> DeviceData:
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=gen)
    y = torch.arange(n) % 3
    return DeviceData(x, y, [100.0], [50.0], runtime, resident)


def test_evaluation_batches_cover_every_example_in_order():
    data = _data()
    idx = torch.cat([i for _, _, i in data.batches(32)])
    assert idx.tolist() == list(range(70))
    x = torch.cat([xb for xb, _, _ in data.batches(32)])
    assert torch.allclose(x, (data.x.float() - 100) / 50)


def test_training_batches_are_shuffled_whole_batches():
    data = _data()
    batches = list(data.batches(32, torch.Generator().manual_seed(1)))
    assert [len(y) for _, y, _ in batches] == [32, 32]  # the incomplete last batch is dropped
    idx = torch.cat([i for _, _, i in batches])
    assert len(set(idx.tolist())) == 64 and idx.tolist() != sorted(idx.tolist())
    for _, y, i in batches:
        assert torch.equal(y, data.y[i])


@pytest.mark.parametrize("workers", [0, 2])
def test_host_placement_gives_the_same_batches(workers):
    host_rt = Runtime(torch.device("cpu"), data_placement="host", workers=workers)
    device, host = _data(), _data(host_rt, resident=False)
    for gen in (None, 5):
        a = list(device.batches(16, gen and torch.Generator().manual_seed(gen)))
        b = list(host.batches(16, gen and torch.Generator().manual_seed(gen)))
        assert len(a) == len(b)
        for (xa, ya, ia), (xb, yb, ib) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb) and torch.equal(ia, ib)


def test_placement_choice():
    assert CPU.data_fits(10**12)  # on the CPU the host is the device
    assert not Runtime(torch.device("cpu"), data_placement="host").data_fits(1)
    assert Runtime(torch.device("cpu"), data_placement="device").data_fits(10**12)


def test_predict_and_accuracy():
    data = _data()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    logits = predict(model, data, CPU)
    assert logits.shape == (70, 3) and logits.dtype == torch.float32
    assert accuracy(model, data, CPU) == pytest.approx(
        (logits.argmax(1) == data.y).float().mean().item()
    )
    assert model.training  # predict restores the mode it found
