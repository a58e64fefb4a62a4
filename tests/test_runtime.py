"""Runtime: the precision a run trains in, and what it makes of batches and models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from alphaprune.batches import DeviceData
from alphaprune.runtime import Runtime, widened

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("auto", torch.float32), ("float32", torch.float32), ("float64", torch.float64)],
)
def test_precision_sets_the_dtype_of_batches_and_models(precision, dtype):
    runtime = Runtime(CPU, precision=precision)
    x = torch.randint(0, 256, (4, 1, 3, 3), dtype=torch.uint8)
    split = DeviceData(x, torch.zeros(4, dtype=torch.long), [100.0], [50.0], runtime)
    batch, _, _ = next(split.batches(4))
    assert batch.dtype == dtype
    torch.testing.assert_close(batch, ((x.double() - 100) / 50).to(dtype), rtol=0, atol=1e-6)
    assert next(runtime.place(nn.Linear(2, 2)).parameters()).dtype == dtype


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_is_bf16_on_cuda_only_at_auto():
    # the context managers, not a CUDA run: on the CPU none of them autocasts
    for precision in ("auto", "float32", "float64"):
        with Runtime(CPU, precision=precision).autocast():
            assert not torch.is_autocast_enabled("cpu")
    cuda = Runtime(torch.device("cuda"), precision="float32")
    assert not isinstance(cuda.autocast(), torch.autocast)
    assert isinstance(Runtime(torch.device("cuda")).autocast(), torch.autocast)


def test_widened_lifts_narrow_floats_and_keeps_float32_and_float64():
    assert widened(torch.ones(2, dtype=torch.bfloat16)).dtype == torch.float32
    for dtype in (torch.float32, torch.float64):
        t = torch.ones(2, dtype=dtype)
        assert widened(t) is t
