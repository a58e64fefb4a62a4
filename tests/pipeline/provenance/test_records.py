"""What each stage reads from the params, the record of it, and the trigger Snakemake sees."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
import yaml

from alphaprune.files import write_json
from alphaprune.pipeline.provenance.records import (
    LONG_AGO,
    STAGE_PARAMS,
    record_matches,
    set_trigger,
    source_digest,
    stage_values,
)

REPO = Path(__file__).resolve().parents[3]
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
        if name != "code"  # the code stage reads no params
    }
    assert declared == STAGE_PARAMS


def test_stage_values_read_the_merged_params():
    assert stage_values(RAW, "prepare") == {"seed": 3, "data": {"name": "digits"}}
    assert stage_values(RAW, "prune", "a") == {
        "prune": {"amount": 0.5},
        "variants.a": {"init": "lsq"},
        "runtime.device": None,
        "runtime.precision": None,
        "runtime.compile": None,
        "runtime.sync_batchnorm": None,
    }
    # absent keys and empty variants are None, as DVC sees them
    assert stage_values(RAW, "pretrain")["model"] is None
    assert stage_values(RAW, "evaluate", "b")["variants.b"] is None
    assert stage_values(RAW, "report") == {
        "variants": RAW["variants"],
        "replicates": None,
        "eval": RAW["eval"],
    }


def test_only_the_runtime_keys_that_can_change_a_result_are_params_of_a_stage():
    """runtime.processes, workers, data_placement, jobs_per_gpu and eval_batch_size spread the
    same computation differently: changing one reruns nothing (README, "What reruns")."""
    keys = {k for keys in STAGE_PARAMS.values() for k in keys if k.startswith("runtime")}
    assert keys == {
        "runtime.device",
        "runtime.precision",
        "runtime.compile",
        "runtime.sync_batchnorm",
    }
    assert "runtime" not in {k for keys in STAGE_PARAMS.values() for k in keys}


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


# ----------------------------------------------------------------- the raw data, by content
def test_source_digest_follows_bytes_not_times(tmp_path):
    archive = tmp_path / "cifar.tar.gz"
    archive.write_bytes(b"\x1f\x8b some archive")
    first = source_digest(archive)
    os.utime(archive, (time.time() + 100, time.time() + 100))  # touch
    assert source_digest(archive) == first
    copy = tmp_path / "copy.tar.gz"
    shutil.copyfile(archive, copy)  # cp without -p: another inode, another time
    assert source_digest(copy) == first
    archive.write_bytes(b"\x1f\x8b some archivE")
    assert source_digest(archive) != first
    assert source_digest(tmp_path / "none") is None


def test_source_digest_of_a_folder_holds_every_file_and_its_path(tmp_path):
    root = tmp_path / "images"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "cat" / "0.png").write_bytes(b"pixels")
    first = source_digest(root)
    (root / "train" / "cat" / "0.png").rename(root / "train" / "cat" / "1.png")
    assert source_digest(root) != first  # a renamed image is another dataset
    (root / "train" / "cat" / "1.png").rename(root / "train" / "cat" / "0.png")
    assert source_digest(root) == first
    (root / "train" / "dog").mkdir()
    (root / "train" / "dog" / "0.png").write_bytes(b"more")
    assert source_digest(root) != first


def test_source_digest_reads_again_only_files_whose_stat_changed(tmp_path, monkeypatch):
    from alphaprune.pipeline.provenance import records

    root, cache = tmp_path / "raw", tmp_path / "cache.json"
    root.mkdir()
    for name in ("a", "b", "c"):
        (root / name).write_bytes(name.encode())
    read = []
    real = records._file_sha256
    monkeypatch.setattr(records, "_file_sha256", lambda p: read.append(p.name) or real(p))
    first = source_digest(root, cache)
    assert sorted(read) == ["a", "b", "c"]
    read.clear()
    assert source_digest(root, cache) == first and read == []  # stat only
    os.utime(root / "b", (time.time() + 100, time.time() + 100))
    assert source_digest(root, cache) == first and read == ["b"]  # re-read, same bytes
    cache.write_text("{not json")  # a damaged cache: every file read again, same digest
    assert source_digest(root, cache) == first


def test_a_trigger_replaces_a_folder_of_per_job_triggers(tmp_path):
    """The latency stage had a trigger per job (a folder of them) before it timed the grid in
    one job: a project run before that must not stop the Snakefile."""
    path = tmp_path / "params-changed" / "latency"
    (path / "a").mkdir(parents=True)
    (path / "a" / "t0-s0").write_text("old")
    set_trigger(path, stale=False)
    assert path.is_file() and path.stat().st_mtime == LONG_AGO
