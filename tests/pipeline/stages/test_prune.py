"""The prune stage's plan for `prune.target: latency`: from the table file the table stage
writes, or a sentence where that file holds no table."""

from __future__ import annotations

import json

import pytest

from alphaprune.budget.latency_table import LatencyTable
from alphaprune.errors import UserError
from alphaprune.loading import load_model
from alphaprune.pipeline.params.loader import resolve
from alphaprune.pipeline.stages.prune import prune, read_table
from conftest import TINY

LATENCY = {"branch": "channels", "init": "pretrained", "target": "latency", "amount": 0.3}
SHORT = {"epochs": 2, "finetune_epochs": 1, "schedule": {"kind": "oneshot"}}


def _stand_in_table(teacher_path) -> LatencyTable:
    """A table of the teacher's groups whose every channel costs the same 1 ms: any plan that
    removes 30% of the channel-milliseconds meets the target, and the prediction is exact."""
    model, _ = load_model(teacher_path)
    widths = {"conv2": model.conv2.out_channels, "conv3": model.conv3.out_channels}
    full = float(sum(widths.values()))
    groups = {r: {k: full - (w - k) for k in range(8, w, 8)} for r, w in widths.items()}
    return LatencyTable("onnxruntime-cpu", 64, 1, 8, full, widths, groups)


def test_a_latency_target_prunes_from_the_table(tmp_path, prepared_path, teacher_dir):
    teacher = teacher_dir / "model.pt"
    table = _stand_in_table(teacher)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table.to_dict()))
    raw = {**TINY, "latency": {"table": {}}, "variants": {"lat": {**LATENCY, **SHORT}}}
    params = resolve(raw, "tiny")
    out = tmp_path / "out"
    prune(params, "lat", prepared_path, teacher, out, table_path=path)
    _, recipe = load_model(out / "student.pt")
    planned = recipe["plan"]["latency"]
    assert planned["teacher_ms"] == table.full_ms
    assert planned["student_ms"] <= 0.7 * table.full_ms < planned["student_ms"] + 8
    kept = {r: table.widths[r] - len(idxs) for r, idxs in recipe["plan"]["removed"].items()}
    assert table.predict(kept) == pytest.approx(planned["student_ms"])


def test_a_table_file_that_holds_no_table_is_refused_with_what_to_do(tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"measured": False, "why": "latency.table is unset"}))
    with pytest.raises(UserError, match="holds no table .latency.table is unset.: set latency"):
        read_table(path)
    with pytest.raises(UserError, match="give --table FILE"):
        read_table(None)


def test_every_process_of_a_run_builds_the_main_process_plan(monkeypatch):
    """Each process plans alone; a near-tie in a block's damage (or a channel's importance)
    broken another way on another device would build another student. The prune stage builds
    the one the main process planned, in every process (`distributed.same_as_main`, here
    standing in for the broadcast: this process would have dropped other blocks)."""
    import types

    import torch

    from alphaprune import distributed
    from alphaprune.blocks import BlockBlend
    from alphaprune.budget.allocator import allocate
    from alphaprune.models import build_model
    from alphaprune.pipeline.params.recipe import PruneConfig
    from alphaprune.pipeline.stages import prune as stage
    from alphaprune.world import World

    torch.manual_seed(0)
    teacher = build_model("resnet20", 10, image_size=16).eval()
    x = torch.randn(8, 3, 16, 16)
    cfg = PruneConfig(branch="blocks", amount=0.3, target="macs")
    main_plan = allocate(teacher, "blocks", 0.5, x, target="macs")  # what the main one chose
    sent = []

    def broadcast(world, plan, device):
        sent.append((world.rank, plan))
        return main_plan

    monkeypatch.setattr(distributed, "same_as_main", broadcast)
    runtime = types.SimpleNamespace(world=World(rank=1, size=2), device=torch.device("cpu"))
    model, plan = stage.make_student(teacher, cfg, x, [x], agree=stage.agreed(runtime))
    faded = sorted(n for n, m in model.named_modules() if isinstance(m, BlockBlend))
    assert plan == main_plan and faded == sorted(lp.name for lp in main_plan.layers)
    assert sent[0][0] == 1 and sent[0][1] != main_plan  # it planned another student itself
    alone = types.SimpleNamespace(world=World(), device=torch.device("cpu"))
    _, own = stage.make_student(teacher, cfg, x, [x], agree=stage.agreed(alone))
    assert own == sent[0][1] and len(sent) == 1  # one process: its own plan, nothing sent
