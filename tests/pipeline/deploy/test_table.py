"""The latency table measured in onnxruntime (alphaprune.pipeline.deploy.table): its shape per
layer and per group, the prediction per layer exact where the layers' times are bilinear in their
widths (stand-in timings), and the `alphaprune table` command. How well it predicts students it
never timed on real timings is measured by benchmarks/latency_table.py (docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from alphaprune.budget.latency_table import LatencyTable
from alphaprune.budget.plan import BudgetError
from alphaprune.channels import channel_groups
from alphaprune.modelfile import recipe_for, save_model
from alphaprune.models import build_model
from alphaprune.pipeline.cli import main
from alphaprune.pipeline.deploy import table as table_module
from alphaprune.pipeline.deploy.layer_grids import layer_inputs, sampled
from alphaprune.pipeline.deploy.table import adjacent, measure_table, narrowed

SHAPE = (3, 16, 16)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("cnn", 10, in_channels=3, image_size=16).eval()


def test_sampled_widths_keep_the_narrowest_and_spread_evenly():
    assert sampled([4, 8, 12], 8) == [4, 8, 12]
    assert sampled(list(range(8, 64, 8)), 3) == [8, 32, 56]


def test_the_table_per_group_times_every_group_at_its_blocks(model):
    table = measure_table(
        model, SHAPE, per="group", batch=8, round_to=8, widths=3, seconds=0.01, rounds=2
    )
    groups, _ = channel_groups(model, torch.zeros(2, *SHAPE), ["conv1", "fc"])
    assert table.widths == {g.root: g.width for g in groups}
    for g in groups:
        timed = sorted(table.groups[g.root])
        assert timed[0] == 8 and len(timed) <= 3 and all(w % 8 == 0 < g.width - w for w in timed)
        for w in timed:
            lo, hi = table.spread[g.root][w]
            assert 0 < lo <= table.groups[g.root][w] <= hi
    # conv3 reads conv2's channels: the two groups meet there, and are timed together once
    ((pair),) = table.pairs
    assert dict(zip(pair.groups, pair.kept, strict=True)) == {"conv2": 16, "conv3": 32}  # halves
    assert pair.spread[0] <= pair.ms <= pair.spread[1]
    timed = 1 + sum(len(t) for t in table.groups.values()) + len(table.pairs) + 1  # + check
    assert table.conditions["models_timed"] == timed
    assert table.full_spread[0] <= table.full_ms <= table.full_spread[1]


def test_the_table_per_layer_times_each_layer_on_the_grid_of_its_groups_widths(model):
    """conv1 and conv2 write their groups, conv3 reads conv2's and writes its own, fc reads
    conv3's: each timed alone on the input it gets, at the sampled widths of the groups it
    reads (rows) and writes (columns); conv1 (excluded: the first layer) at its width alone."""
    table = measure_table(
        model, SHAPE, batch=8, round_to=8, widths=3, seconds=0.01, rounds=2, whole_rounds=3,
        whole_seconds=0.01,
    )  # fmt: skip
    assert table.per == "layer" and table.groups == {} and table.pairs == ()
    assert table.widths == {"conv2": 32, "conv3": 64}
    layers = {layer.name: layer for layer in table.layers}
    assert list(layers) == ["conv1", "conv2", "conv3", "fc"]  # in the order they run
    assert sorted(layers["conv1"].ms) == [(3, 16)] and layers["conv1"].reads == {}
    assert sorted(layers["conv2"].ms) == [(16, 8), (16, 24), (16, 32)]  # 3 of 8, 16, 24, 32
    assert layers["conv3"].reads == {"conv2": 1} and layers["conv3"].writes == {"conv3": 1}
    assert sorted(layers["conv3"].ms) == sorted(
        (i, o)
        for i in (8, 24, 32)
        for o in (8, 40, 64)  # 3 of 8, 16 ... 64
    )
    assert sorted(layers["fc"].ms) == [(8, 10), (40, 10), (64, 10)]
    for layer in table.layers:
        for cell, ms in layer.ms.items():
            lo, hi = layer.spread[cell]
            assert 0 < lo <= ms <= hi
    cells = sum(len(layer.ms) for layer in table.layers)  # no two layers alike here
    # + the teacher, the calibration (about three quarters, half and the least of each width)
    # and the check (widths drawn at random)
    assert table.conditions["models_timed"] == 5 + cells
    assert [dict(plan.kept) for plan in table.calibration] == [
        {"conv2": 24, "conv3": 48},
        {"conv2": 16, "conv3": 32},
        {"conv2": 8, "conv3": 8},
    ]
    assert table.check.kept["conv2"] in (8, 16, 24) and table.check.kept["conv3"] % 8 == 0
    assert table.check.kept["conv3"] < 64
    assert dict(table.check.kept) not in [dict(plan.kept) for plan in table.calibration]
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again == table


class Depthwise(nn.Module):
    """A depthwise conv (its inputs are its outputs: one group with conv1, which writes them)
    and a Linear after a flatten (it reads four features per channel of conv2's group)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.dw, self.bn2 = nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.BatchNorm2d(16)
        self.conv2, self.pool = nn.Conv2d(16, 16, 1), nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.dw(x)))
        return self.fc(self.pool(self.conv2(x)).flatten(1))


class Concat(nn.Module):
    """A conv reading two groups at once (a concatenation: `c` has 16 + 16 inputs)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 16, 3, padding=1)
        self.c, self.fc = nn.Conv2d(32, 16, 3, padding=1), nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.c(torch.cat([self.a(x), self.b(x)], 1)))
        return self.fc(x.mean((2, 3)))


def _cost(layer: nn.Module, shape: tuple[int, ...]) -> float:
    """A stand-in time, bilinear in a layer's inputs and outputs as its MACs are: weights per
    output x outputs x positions."""
    positions = 1 if isinstance(layer, nn.Linear) else shape[1] * shape[2]
    return float(layer.weight.shape[1] * layer.weight.shape[0] * positions)


def _macs_as_ms(models, shape, *args, shapes=None):
    """A stand-in for the timings: a layer alone takes its `_cost`, a whole model the sum of its
    layers' (nothing outside them), the same in every round."""

    def ms(m, shape):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return _cost(m, shape)
        return sum(_cost(m.get_submodule(n), s) for n, s in layer_inputs(m, shape))

    shapes = shapes or [shape] * len(models)
    return [[ms(m, s)] * 2 for m, s in zip(models, shapes, strict=True)]


MODELS = {
    "cnn": lambda: build_model("cnn", 10, in_channels=3, image_size=16),
    "depthwise": Depthwise,
    "concat": Concat,
    "resnet20": lambda: build_model("resnet20", 10, image_size=16),  # streams: maps and adds
}


@pytest.mark.parametrize("name", list(MODELS))
def test_the_prediction_per_layer_is_exact_where_layer_times_are_bilinear(name, monkeypatch):
    """With every layer's time bilinear in its widths and nothing outside the layers, the
    table predicts a student it never timed exactly, from a sparse grid (2 widths each way:
    every width between is interpolated), a depthwise conv along its diagonal, a Linear after
    a flatten by its features per channel, a conv reading two groups along their sum. (Exact
    but for float rounding: sums of a few dozen products of small integers, far inside 1e-12.)"""
    monkeypatch.setattr(table_module, "timed_in_turns", _macs_as_ms)
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    exclude = ["linear"] if name == "resnet20" else []
    table = measure_table(model, SHAPE, batch=8, round_to=4, widths=2, exclude=exclude)
    layers = {layer.name: layer for layer in table.layers}
    if name == "depthwise":
        assert layers["dw"].tied and sorted(layers["dw"].ms) == [(4, 4), (16, 16)]
        assert layers["fc"].reads == {"conv2": 4} and sorted(layers["fc"].ms) == [
            (16, 10),
            (64, 10),
        ]
    if name == "concat":
        assert layers["c"].reads == {"a": 1, "b": 1} and sorted(layers["c"].ms) == [
            (i, o)
            for i in (8, 32)
            for o in (4, 16)  # 4 + 4 inputs at the least
        ]
    if name == "resnet20":  # its blocks of one stage are alike: each timed once
        cells = sum(len(layer.ms) for layer in table.layers)
        assert table.conditions["models_timed"] < cells
        inner = [layers[f"layer3.{b}.conv1"] for b in range(3)]
        assert inner[1].ms == inner[2].ms  # one timing read twice (block 0 reads another input)
    _assert_predicts_random_students(table, model, _macs_as_ms, 5)


def _assert_predicts_random_students(table, model, timings, n: int) -> None:
    """`n` students of random widths, between the grid's (4 and the full width), not on a
    block: the table predicts what `timings` says each takes, to float rounding."""
    example = torch.zeros(2, *SHAPE)
    g = torch.Generator().manual_seed(0)
    for _ in range(n):
        kept = {r: int(torch.randint(5, w, (1,), generator=g)) for r, w in table.widths.items()}
        ((exact, _),) = timings([narrowed(model, kept, example)], SHAPE)
        assert table.predict(kept) == pytest.approx(exact, rel=1e-12)


@pytest.mark.parametrize("overhead", [0.0, 0.25, 0.5])
def test_the_table_per_layer_takes_the_time_that_does_not_shrink_from_its_calibration(
    overhead, monkeypatch
):
    """A whole model's time its layers' plus a fixed `overhead` share of the teacher's (the
    engine's per-operator costs, which do not shrink with the widths): the calibration plan
    finds that share, and the table predicts students it never timed exactly, the check too
    (exact but for float rounding, as above)."""
    teacher = MODELS["resnet20"]().eval()
    layers_ms = _macs_as_ms([teacher], SHAPE)[0][0]
    fixed_ms = overhead / (1 - overhead) * layers_ms  # `overhead` of the teacher's time

    def with_overhead(models, shape, *args, shapes=None):
        shapes = shapes or [shape] * len(models)
        times = _macs_as_ms(models, shape, shapes=shapes)
        whole = [not isinstance(m, (nn.Conv2d, nn.Linear)) for m in models]
        return [[t + fixed_ms * w for t in ts] for ts, w in zip(times, whole, strict=True)]

    monkeypatch.setattr(table_module, "timed_in_turns", with_overhead)
    table = measure_table(teacher, SHAPE, batch=8, round_to=4, widths=2, exclude=["linear"])
    assert table.fixed == pytest.approx(overhead, abs=1e-12)
    assert table.check_error() == pytest.approx(0, abs=1e-12)
    _assert_predicts_random_students(table, teacher, with_overhead, 3)
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again == table and again.fixed == table.fixed


@pytest.mark.parametrize("per", ["layer", "group"])
def test_the_models_timed_whole_are_timed_in_turns_of_their_own_per_layer(per, model, monkeypatch):
    """Per layer, the teacher, the calibration and the check are timed in turns of their own at
    `whole_seconds` x `whole_rounds` (unset: as the layers), the layers at `seconds` x
    `rounds`; per group, every model in the same turns (a group's timing is a difference from
    the teacher's), at `seconds` x `rounds`."""
    calls = []

    def recorded(models, shape, batch, threads, seconds, rounds, shapes=None):
        whole = {not isinstance(m, (nn.Conv2d, nn.Linear)) for m in models}
        calls.append((len(models), whole, seconds, rounds))
        return _macs_as_ms(models, shape, shapes=shapes)

    monkeypatch.setattr(table_module, "timed_in_turns", recorded)
    table = measure_table(
        model, SHAPE, per=per, batch=8, round_to=8, widths=2, seconds=0.01, rounds=2,
        whole_seconds=0.5, whole_rounds=5,
    )  # fmt: skip
    if per == "layer":
        (n, whole, *timing), (_, layers, *layer_timing) = calls
        assert (n, whole, timing) == (5, {True}, [0.5, 5])  # teacher, 3 calibration, check
        assert (layers, layer_timing) == ({False}, [0.01, 2])
        assert (table.conditions["whole_seconds"], table.conditions["whole_rounds"]) == (0.5, 5)
        calls.clear()
        measure_table(model, SHAPE, batch=8, round_to=8, widths=2, seconds=0.01, rounds=2)
        assert [c[2:] for c in calls] == [(0.01, 2), (0.01, 2)]  # unset: as the layers
    else:
        ((n, _, *timing),) = calls
        assert timing == [0.01, 2] and n == table.conditions["models_timed"]
        assert "whole_seconds" not in table.conditions


def test_a_plan_timed_whole_is_the_median_of_its_ratios_to_the_teacher(model, monkeypatch):
    """Per layer, a calibration plan's (and the check's) time is the teacher's median times the
    median over rounds of its ratio to the teacher in that round: rounds of 10, 20 and 30 ms
    for the teacher and 5, 9 and 18 for a plan give ratios 0.5, 0.45 and 0.6, so 20 x 0.5 =
    10 ms (the median of its own timings, 9 ms, would take the ratio of another round)."""
    teacher_rounds, plan_rounds = [10.0, 20.0, 30.0], [5.0, 9.0, 18.0]

    def drifting(models, shape, batch, threads, seconds, rounds, shapes=None):
        whole = [not isinstance(m, (nn.Conv2d, nn.Linear)) for m in models]
        if all(whole):  # the teacher first, then the plans
            return [teacher_rounds] + [plan_rounds] * (len(models) - 1)
        return _macs_as_ms(models, shape, shapes=shapes)

    monkeypatch.setattr(table_module, "timed_in_turns", drifting)
    table = measure_table(model, SHAPE, batch=8, round_to=8, widths=2)
    assert table.full_ms == 20.0 and table.full_spread == (10.0, 30.0)
    for plan in (*table.calibration, table.check):
        assert plan.ms == pytest.approx(10.0, rel=1e-12) and plan.spread == (5.0, 18.0)


class Split(nn.Module):
    """`c1`'s channels split between two readers (`chunk`): each reads half of the group."""

    def __init__(self):
        super().__init__()
        self.c1, self.a, self.b = nn.Conv2d(3, 32, 3), nn.Conv2d(16, 8, 3), nn.Conv2d(16, 8, 3)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        left, right = self.c1(x).chunk(2, 1)
        return self.fc(torch.cat([self.a(left), self.b(right)], 1).mean((2, 3)))


class Shared(nn.Module):
    """One conv called twice (its weights shared): two layers' time, not one."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        return self.fc(self.c2(torch.relu(self.c2(self.c1(x)))).mean((2, 3)))


def test_a_table_per_layer_refuses_a_split_group_and_counts_every_call(monkeypatch):
    monkeypatch.setattr(table_module, "timed_in_turns", _macs_as_ms)
    with pytest.raises(BudgetError, match=r"b reads part of group c1's channels .*per: group"):
        measure_table(Split().eval(), SHAPE, batch=8, round_to=4, widths=2, exclude=[])
    model = Shared().eval()
    table = measure_table(model, SHAPE, batch=8, round_to=4, widths=2, exclude=[])
    assert [layer.name for layer in table.layers] == ["c1", "c2", "c2#2", "fc"]
    ((root, width),) = table.widths.items()  # c1's outputs are c2's inputs and outputs: one
    ((exact, _),) = _macs_as_ms([narrowed(model, {root: 8}, torch.zeros(2, *SHAPE))], SHAPE)
    assert width == 16 and exact < 0.3 * table.full_ms  # c2 twice at 8 of 16: a quarter
    assert table.predict({root: 8}) == pytest.approx(exact, rel=1e-12)
    with pytest.raises(ValueError, match="per: one of layer, group, got 'pair'"):
        measure_table(model, SHAPE, per="pair")


def test_table_command_writes_what_plan_reads(tmp_path, model, capsys):
    teacher = tmp_path / "teacher.pt"
    save_model(teacher, model, recipe_for("cnn", 10, SHAPE))
    out = tmp_path / "table.json"
    args = ["--round-to", "8", "--widths", "2", "--seconds", "0.01", "--rounds", "1"]
    args += ["--whole-seconds", "0.01", "--whole-rounds", "2"]
    assert main(["table", "--teacher", str(teacher), "--out", str(out), *args]) == 0
    table = LatencyTable.from_dict(json.loads(out.read_text()))
    assert table.engine == "onnxruntime-cpu" and table.batch == 64 and table.threads == 1
    assert len(table.calibration) == 3 and 0 <= table.fixed <= 0.9
    said = capsys.readouterr().out
    assert f"calibration: {100 * table.fixed:.1f}% of the time does not shrink" in said
    assert f"check: {table.check_note()}" in said
    plan = ["plan", "--teacher", str(teacher), "--branch", "channels", "--amount", "0.2"]
    assert main([*plan, "--target", "latency", "--table", str(out)]) == 0
    assert "ms predicted (onnxruntime-cpu, batch 64, 1 thread(s))" in capsys.readouterr().out
    assert main([*plan, "--target", "latency"]) == 2
    assert "needs --table FILE" in capsys.readouterr().err
    assert main(["table", "--teacher", str(teacher), "--out", str(out), "--widths", "1"]) == 2
    assert "at least 2 timed widths" in capsys.readouterr().err
    assert main(["table", "--teacher", str(teacher), "--out", str(out), "--whole-rounds", "0"]) == 2
    assert "--whole-rounds: above 0, got 0" in capsys.readouterr().err
    assert (
        main(["table", "--teacher", str(teacher), "--out", str(out), "--per", "group", *args]) == 0
    )
    table = LatencyTable.from_file(out)
    assert (
        table.per == "group" and table.layers == () and sorted(table.groups) == ["conv2", "conv3"]
    )


def test_a_group_with_no_narrower_width_is_not_timed_in_a_pair(model):
    """At round_to 32, conv2 (32 channels) has no width to take: it is timed at none, and its
    pair with conv3 is not timed (it would say nothing of cutting conv2)."""
    table = measure_table(
        model, SHAPE, per="group", batch=2, round_to=32, widths=2, seconds=0.005, rounds=1
    )
    assert table.groups["conv2"] == {} and list(table.groups["conv3"]) == [32]
    assert table.pairs == ()
    assert table.predict({"conv3": 32}) == table.groups["conv3"][32]


def _prepared_card(tmp_path) -> Path:
    """A prepared data file's card, as `prepare` writes it beside the tensors (all the table
    stage reads: the input shape and the classes)."""
    card = tmp_path / "data.json"
    card.write_text(json.dumps({"shape": list(SHAPE), "classes": [str(c) for c in range(10)]}))
    return card


def test_the_pipelines_table_measures_what_params_say(tmp_path, tiny_raw):
    """`alphaprune table --params --data` (the table stage): the params' model for the data's
    shape, at latency.table's settings, the throughput batch and the latency threads; its
    record holds the params keys the stage depends on."""
    raw = {**tiny_raw, "latency": {"threads": 1, "throughput_batch": 4}}
    raw["latency"]["table"] = {"round_to": 16, "widths": 2, "seconds": 0.005, "rounds": 1}
    raw["latency"]["table"] |= {"whole_seconds": 0.005, "whole_rounds": 2}
    params, out, record = tmp_path / "params.yaml", tmp_path / "table.json", tmp_path / "rec.json"
    params.write_text(json.dumps(raw))
    card = _prepared_card(tmp_path)
    stage = ["table", "--params", str(params), "--data", str(card), "--out", str(out)]
    assert main([*stage, "--record", str(record)]) == 0
    table = LatencyTable.from_dict(json.loads(out.read_text()))
    assert (table.batch, table.threads, table.round_to) == (4, 1, 16)
    assert table.widths == {"conv2": 32, "conv3": 64}  # the cnn at 3x16x16, 10 classes
    assert table.per == "layer" and table.conditions["rounds"] == 1
    assert table.conditions["whole_rounds"] == 2
    conv3 = next(layer for layer in table.layers if layer.name == "conv3")
    assert sorted(conv3.ms) == [(16, 16), (16, 64), (32, 16), (32, 64)]
    assert json.loads(record.read_text())["latency.table"]["round_to"] == 16
    raw["latency"]["table"]["batch"] = 1  # the latency batch, when set
    params.write_text(json.dumps(raw))
    assert main(stage) == 0 and json.loads(out.read_text())["batch"] == 1


def test_without_latency_table_the_stage_measures_nothing_and_says_so(tmp_path, tiny_raw):
    params, out = tmp_path / "params.yaml", tmp_path / "table.json"
    params.write_text(json.dumps(tiny_raw))
    card = _prepared_card(tmp_path)
    assert main(["table", "--params", str(params), "--data", str(card), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["measured"] is False and "latency.table is unset" in written["why"]


def test_the_table_command_is_asked_one_way_or_the_other(tmp_path, tiny_raw, capsys):
    params, out = tmp_path / "params.yaml", tmp_path / "table.json"
    params.write_text(json.dumps(tiny_raw))
    card = str(_prepared_card(tmp_path))
    assert main(["table", "--out", str(out)]) == 2
    assert "give --teacher FILE (a table by hand) or --data" in capsys.readouterr().err
    stage = ["table", "--params", str(params), "--data", card, "--out", str(out)]
    assert main([*stage, "--round-to", "4"]) == 2
    assert "--round-to: the pipeline's table takes its settings from params" in (
        capsys.readouterr().err
    )
    assert not out.exists()


def _widths_as_ms(models, *args, **kwargs):
    """A stand-in for the timings: each model's 'milliseconds' are its convs' output widths
    written as digits (conv1 100s, conv2 10s ... as one number), the same in every round, so
    each entry of the table says which model it was read from."""

    def ms(m):
        return float(
            sum(m.get_submodule(f"conv{i}").out_channels * 10 ** (6 - 2 * i) for i in (1, 2, 3))
        )

    return [[ms(m)] * 2 for m in models]


def test_the_table_checks_itself_on_a_plan_it_did_not_time_in_parts(model, monkeypatch):
    """Every group at about half its width, timed at once (three groups: not one of the pairs
    timed), read from the right model, its prediction recorded beside it, through the file."""
    monkeypatch.setattr(table_module, "timed_in_turns", _widths_as_ms)
    table = measure_table(model, SHAPE, per="group", batch=8, round_to=8, widths=2, exclude=["fc"])
    assert dict(table.check.kept) == {"conv1": 8, "conv2": 16, "conv3": 32}
    assert table.check.ms == 8_16_32  # conv1 8, conv2 16, conv3 32 wide
    assert table.full_ms == 16_32_64
    assert table.groups["conv2"][8] == 16_08_64 and table.groups["conv1"][8] == 8_32_64
    pairs = {frozenset(p.groups): p.ms for p in table.pairs}
    assert pairs == {
        frozenset({"conv1", "conv2"}): 8_16_64,
        frozenset({"conv2", "conv3"}): 16_16_32,
    }
    assert table.check_error() == table.predict(table.check.kept) / table.check.ms - 1
    assert f"{100 * table.check_error():+.0f}%" in table.check_note()
    again = LatencyTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.check == table.check and again.check_error() == table.check_error()


def test_streams_that_meet_only_at_a_shortcut_map_are_not_a_pair():
    """ResNet-20's streams share only the option-A maps (a copy): no layer costs the product
    of both widths, so the table does not time them as pairs; a stream and a block's inner
    width share two convs, and are one."""
    torch.manual_seed(0)
    resnet = build_model("resnet20", 10).eval()
    groups, _ = channel_groups(resnet, torch.zeros(2, 3, 32, 32), ["linear"])
    pairs = {frozenset((g.root, h.root)) for g, h in adjacent(groups)}
    assert frozenset(("conv1", "layer2.0.conv2")) not in pairs
    assert frozenset(("layer2.0.conv2", "layer3.0.conv2")) not in pairs
    assert {
        frozenset(("conv1", "layer1.0.conv1")),
        frozenset(("layer2.0.conv2", "layer2.1.conv1")),
    } <= pairs
    assert len(pairs) == 11
