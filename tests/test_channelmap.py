"""`ChannelMap`: the option-A shortcut as an explicit map, exactly the zero-pad it replaces, the
same map as a conv for tracing, and pruned on either side as the layers around it are."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from alphaprune.channelmap import ChannelMap, as_conv, padded
from alphaprune.models import build_model


def _option_a(x: torch.Tensor, stride: int, extra: int) -> torch.Tensor:
    """The shortcut as He et al.'s reference implementation writes it."""
    x = x[:, :, ::stride, ::stride]
    return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


@pytest.mark.parametrize(("cin", "cout", "stride"), [(16, 32, 2), (3, 8, 1), (5, 5, 3)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_the_default_map_is_the_option_a_pad_exactly(cin, cout, stride, channels_last):
    x = torch.randn(2, cin, 9, 7)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    m = ChannelMap(cin, padded(cin, cout), stride)
    y = m(x)
    assert torch.equal(y, _option_a(x, stride, cout - cin))  # a copy: no arithmetic


def test_a_bf16_stream_stays_bf16_under_autocast():
    """The gains are float32 buffers: multiplied as they are, they would promote the stream
    (every block after the first map) to float32 under bf16 autocast."""
    model = build_model("resnet20", num_classes=10).eval()
    seen = {}
    model.layer3.register_forward_hook(lambda m, i, o: seen.update(dtype=o.dtype))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 3, 32, 32))
        assert ChannelMap(4, padded(4, 8), 2)(torch.randn(1, 4, 4, 4).bfloat16()).dtype == (
            torch.bfloat16
        )
    assert seen["dtype"] == torch.bfloat16


def test_as_a_conv_it_is_the_same_map():
    torch.manual_seed(0)
    m = ChannelMap(6, torch.tensor([-1, 4, 0, -1, 2, 5, -1]), stride=2)
    m.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 6, 8, 8)
    with as_conv():
        as_matrix = m(x)
    torch.testing.assert_close(as_matrix, m(x))
    assert m.matrix().count_nonzero() == 4  # one entry per used input


def test_dropping_inputs_and_outputs_is_slicing_the_full_map():
    torch.manual_seed(0)
    m = ChannelMap(6, torch.tensor([-1, 4, 0, -1, 2, 5, 1, -1]), stride=1)
    m.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 6, 4, 4)
    full = m(x)
    # an input gone: it is zero at its output; an output gone: that channel is not there
    inputs, outputs = [0, 5], [3, 6]
    zeroed = x.clone()
    zeroed[:, inputs] = 0
    want = m(zeroed)[:, [o for o in range(8) if o not in outputs]]
    m.drop_inputs(inputs)
    m.drop_outputs(outputs)
    assert (m.in_channels, m.out_channels) == (4, 6)
    kept_x = x[:, [i for i in range(6) if i not in inputs]]
    assert torch.equal(m(kept_x), want)
    assert full.shape == (2, 8, 4, 4)


def test_a_map_has_no_parameters_and_no_state():
    """The published ResNet counts hold, and teacher files from before the map still load."""
    model = build_model("resnet20", num_classes=10)
    maps = [m for m in model.modules() if isinstance(m, ChannelMap)]
    assert len(maps) == 2
    assert not any("shortcut" in k for k in model.state_dict())
    assert sum(p.numel() for m in maps for p in m.parameters()) == 0


def test_a_map_refuses_what_is_not_one():
    with pytest.raises(ValueError, match="at most once"):
        ChannelMap(3, torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="narrow"):
        padded(8, 4)
