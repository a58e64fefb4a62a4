"""Would a table per layer predict where the group table does not? (issue 37's next step: HALP
keeps each layer's time at its (input, output) widths.)

For each model: `--students` random allocations drawn as `benchmarks/latency_table.py` draws them
(every group at a random multiple of `--round-to`), each student timed in turns with the teacher
(`measured_fractions`, as the group table's benchmark does). Then every layer with weights of the
teacher and of each student timed alone, on the input it gets in that network (onnxruntime, the
same batch and threads; a layer a student leaves as the teacher has it is timed once), and each
student's time predicted two ways, as a fraction of the teacher's:
  - additive: (teacher's measured ms + the sum over layers of (student's layer ms - teacher's
    layer ms)) / teacher's measured ms: what the layers save, and nothing else changes;
  - proportional: the sum of the student's layer ms / the sum of the teacher's: the time outside
    the layers (activations, additions, copies) shrinks in step with them.
`--group-table` also measures today's group table (`measure_table`) and prints its prediction
of the same students. Untrained models: weights do not change how long a dense layer takes.

    python benchmarks/layer_table.py --models resnet20 vgg11 tv:resnet18 --batch 64 --group-table
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from latency_table import allocations  # the students benchmarks/latency_table.py draws
from torch import nn

from alphaprune.budget.plan import candidate_layers
from alphaprune.channels import channel_groups
from alphaprune.models import build_model
from alphaprune.pipeline.deploy.table import (
    measure_table,
    measured_fractions,
    narrowed,
    timed_in_turns,
)


def layers_alone(model: nn.Module, shape: tuple[int, ...]) -> dict[str, tuple[nn.Module, tuple]]:
    """Each Conv2d and Linear of `model`: a copy of it alone, and the shape (no batch) of the
    input it gets in `model`."""
    inputs, hooks = {}, []

    def record(name):
        def hook(module, args, out) -> None:  # returns nothing: the output stays as it is
            inputs[name] = args[0].shape[1:]

        return hook

    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(record(name)))
    with torch.no_grad():
        model.eval()(torch.zeros(1, *shape))
    for h in hooks:
        h.remove()
    return {
        name: (nn.Sequential(model.get_submodule(name)).eval(), tuple(s))
        for name, s in inputs.items()
    }


def key(layer: nn.Module, shape: tuple) -> tuple:
    (m,) = layer
    return (type(m).__name__, tuple(m.weight.shape), shape, getattr(m, "stride", None))


def timed_layers(layers: dict[tuple, tuple[nn.Module, tuple]], timing: dict) -> dict[tuple, float]:
    """Median ms of each distinct layer alone; the layers of one input shape timed in turns."""
    by_shape = defaultdict(list)
    for k, (_, shape) in layers.items():
        by_shape[shape].append(k)
    ms = {}
    for shape, keys in by_shape.items():
        times = timed_in_turns([layers[k][0] for k in keys], shape, **timing)
        ms.update({k: statistics.median(ts) for k, ts in zip(keys, times, strict=True)})
    return ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet20", "vgg11", "tv:resnet18"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--round-to", type=int, default=8)
    p.add_argument("--students", type=int, default=5)
    p.add_argument("--seconds", type=float, default=0.1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--size", type=int, default=32, help="input height and width")
    p.add_argument("--group-table", action="store_true", help="also today's group table")
    args = p.parse_args()
    shape = (3, args.size, args.size)
    timing = dict(batch=args.batch, threads=args.threads, seconds=args.seconds, rounds=args.rounds)
    for name in args.models:
        torch.manual_seed(0)
        model = build_model(name, 10, in_channels=3, image_size=args.size).eval()
        example = torch.zeros(2, *shape)
        _, excluded = candidate_layers(model, None, example)
        groups, _ = channel_groups(model, example, excluded)
        drawn = allocations({g.root: g.width for g in groups}, args.round_to, args.students)

        t0 = time.perf_counter()
        measured = measured_fractions(model, shape, drawn, **timing)
        t_students = time.perf_counter() - t0

        t0 = time.perf_counter()
        per_model = [layers_alone(model, shape)]
        per_model += [layers_alone(narrowed(model, kept, example), shape) for kept in drawn]
        distinct = {key(m, s): (m, s) for layers in per_model for m, s in layers.values()}
        ms = timed_layers(distinct, timing)
        sums = [sum(ms[key(m, s)] for m, s in layers.values()) for layers in per_model]
        t_layers = time.perf_counter() - t0
        # the teacher whole, for the additive prediction's base
        full = statistics.median(timed_in_turns([model], shape, **timing)[0])

        table = None
        if args.group_table:
            t0 = time.perf_counter()
            table = measure_table(model, shape, round_to=args.round_to, **timing)
            t_table = time.perf_counter() - t0

        print(
            f"{name}: {len(groups)} groups, batch {args.batch}, {args.threads} thread(s); teacher "
            f"{full:.3f} ms whole, its {len(per_model[0])} layers alone {sums[0]:.3f} ms "
            f"({sums[0] / full:.0%}); {len(distinct)} distinct layers timed in {t_layers:.0f} s, "
            f"the {len(drawn)} students whole in {t_students:.0f} s"
            + (f", the group table in {t_table:.0f} s" if table else "")
        )
        errors: dict[str, list[float]] = {"additive": [], "proportional": [], "group table": []}
        for kept, got, student in zip(drawn, measured, sums[1:], strict=True):
            predictions = {
                "additive": (full + student - sums[0]) / full,
                "proportional": student / sums[0],
            }
            if table is not None:
                predictions["group table"] = table.predict(kept) / table.full_ms
            shown = []
            for how, pred in predictions.items():
                errors[how].append(pred / got - 1)
                shown.append(f"{how} {pred:.3f} ({errors[how][-1]:+.1%})")
            print(f"  student ({len(kept)} groups cut): measured {got:.3f}; " + ", ".join(shown))
        print(
            "  largest |error|: "
            + ", ".join(f"{how} {max(map(abs, e)):.1%}" for how, e in errors.items() if e)
        )


if __name__ == "__main__":
    main()
