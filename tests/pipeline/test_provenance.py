"""What each stage reads from the params, the record of it, and the trigger Snakemake sees."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from alphaprune.files import write_json
from alphaprune.pipeline.provenance import (
    LONG_AGO,
    STAGE_PARAMS,
    record_matches,
    set_trigger,
    stage_values,
)

REPO = Path(__file__).resolve().parents[2]
RAW = {
    "seed": 3,
    "data": {"name": "digits"},
    "prune": {"amount": 0.5},
    "variants": {"a": {"init": "lsq"}, "b": None},
    "eval": {"tolerance_pp": 2.0},
}


def test_stage_params_are_the_ones_dvc_yaml_declares():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    declared = {
        name: tuple(
            p.replace("${item.variant}", "{variant}") for p in body.get("do", body)["params"]
        )
        for name, body in stages.items()
    }
    assert declared == STAGE_PARAMS


def test_stage_values_read_the_merged_params():
    assert stage_values(RAW, "prepare") == {"seed": 3, "data": {"name": "digits"}}
    assert stage_values(RAW, "prune", "a") == {
        "prune": {"amount": 0.5},
        "variants.a": {"init": "lsq"},
    }
    # absent keys and empty variants are None, as DVC sees them
    assert stage_values(RAW, "pretrain")["model"] is None
    assert stage_values(RAW, "evaluate", "b")["variants.b"] is None
    assert stage_values(RAW, "report") == {
        "variants": RAW["variants"],
        "replicates": None,
        "eval": RAW["eval"],
    }


@pytest.mark.parametrize("stage", STAGE_PARAMS)
def test_every_stage_has_values(stage):
    assert set(stage_values(RAW, stage, "a")) == {
        k.format(variant="a") for k in STAGE_PARAMS[stage]
    }


def test_a_record_matches_only_the_values_it_holds(tmp_path):
    path = tmp_path / "r.json"
    values = stage_values(RAW, "prune", "a")
    assert not record_matches(path, values)  # no record: the outputs' params are unknown
    write_json(path, values)
    assert record_matches(path, values)
    other = {**values, "seed": 4}
    assert not record_matches(path, other)
    assert record_matches(path, {**values, "prune": {"amount": 0.5}})  # equal, not identical
    path.write_text("{ damaged")
    assert not record_matches(path, values)


def test_the_trigger_is_new_when_stale_and_old_when_not(tmp_path):
    path = tmp_path / "t" / "prune" / "a"
    set_trigger(path, stale=False)
    assert path.stat().st_mtime == LONG_AGO
    before = time.time()
    set_trigger(path, stale=True)
    first = path.read_text()
    assert path.stat().st_mtime >= before - 1
    set_trigger(path, stale=True)
    # new content each time: Snakemake ignores a newer input whose checksum it has seen
    assert path.read_text() != first
    set_trigger(path, stale=False)
    assert path.stat().st_mtime == LONG_AGO


def test_a_stale_trigger_is_newer_than_the_record_whatever_the_clock(tmp_path):
    """On a cluster the file server's clock may run ahead: the trigger must still be newer
    than the record (the newest output of the job)."""
    ahead = time.time() + 3600
    path = tmp_path / "t"
    set_trigger(path, stale=True, newer_than=ahead)
    assert path.stat().st_mtime >= ahead + 1
    set_trigger(path, stale=False, newer_than=ahead)
    assert path.stat().st_mtime == LONG_AGO
