"""What does writing ResNet-20's option-A shortcut as a `ChannelMap` (a gather) instead of a pad
cost the teacher? (issue 38, part 2: the map is what lets Torch-Pruning prune the streams.)

The same weights with each shortcut as the reference implementation's slice-and-pad and as the
map; the outputs checked equal, then both timed in turns (onnxruntime and PyTorch eager, one
thread, batch 1 and 64), `--rounds` medians of repeated passes; prints each time with its least
and greatest round, and the map's over the pad's.

    python benchmarks/shortcut_map.py --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from alphaprune.channelmap import ChannelMap
from alphaprune.models import build_model
from alphaprune.pipeline.deploy.export import export_onnx, session


class Pad(torch.nn.Module):
    """The shortcut as He et al.'s reference implementation writes it."""

    def __init__(self, stride: int, extra: int):
        super().__init__()
        self.stride, self.extra = stride, extra

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))


def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    mapped = build_model("resnet20", 10).eval()
    padded = build_model("resnet20", 10).eval()
    padded.load_state_dict(mapped.state_dict())
    for name, m in list(padded.named_modules()):
        if isinstance(m, ChannelMap):
            padded.set_submodule(name, Pad(m.stride, m.out_channels - m.in_channels))
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(padded(x), mapped(x))  # a copy either way: no arithmetic
    return {"pad": padded, "map": mapped}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=0.5, help="timed seconds per model, round")
    args = p.parse_args()
    torch.set_num_threads(1)
    nets = models()
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for name, m in nets.items():
            export_onnx(m, (3, 32, 32), Path(tmp) / f"{name}.onnx")
            sessions[name] = session(Path(tmp) / f"{name}.onnx", threads=1)

        def ort(name, x):
            sessions[name].run(None, {"input": x.numpy()})

        def eager(name, x):
            with torch.inference_mode():
                nets[name](x)

        for engine, run in (("onnxruntime", ort), ("pytorch eager", eager)):
            for batch in (1, 64):
                x = torch.randn(batch, 3, 32, 32)
                times: dict[str, list[float]] = {name: [] for name in nets}
                for r in range(args.rounds):
                    order = list(nets) if r % 2 == 0 else list(reversed(nets))
                    for name in order:
                        run(name, x)
                        n, start = 0, time.perf_counter()
                        while time.perf_counter() - start < args.seconds:
                            run(name, x)
                            n += 1
                        times[name].append((time.perf_counter() - start) / n * 1e3)
                med = {name: statistics.median(ts) for name, ts in times.items()}
                shown = "  ".join(
                    f"{name} {med[name]:.3f} ms [{min(ts):.3f}, {max(ts):.3f}]"
                    for name, ts in times.items()
                )
                print(f"{engine}, batch {batch}: {shown}  map/pad {med['map'] / med['pad']:.3f}")


if __name__ == "__main__":
    main()
