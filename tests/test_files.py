"""Atomic writes: the file appears whole or not at all, with the permissions open() would give."""

from __future__ import annotations

import math
import os
import stat

import pandas as pd
import pytest

from alphaprune.files import atomic_path, read_csv, write_csv, write_json


def test_written_file_has_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a" / "m.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "m.json").stat().st_mode) == 0o644


def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "m.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text().strip().endswith("}") and '"v": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json"]


def test_a_killed_writers_temporary_is_removed_by_the_next_write(tmp_path):
    stale = tmp_path / ".m.json.abc1_3de.tmp"  # what SIGKILL during a write leaves behind
    stale.write_text("half")
    other = tmp_path / ".m.json.bak.abcdefgh.tmp"  # a temporary of another file, m.json.bak
    other.write_text("in progress")
    write_json(tmp_path / "m.json", {"v": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "m.json"]


def test_a_csv_reads_back_as_pandas_reads_it(tmp_path):
    """write_csv then read_csv: what a training job writes (history.csv, steps.csv) and the
    evaluation reads, without pandas: the rows pandas reads, a missing cell NaN (a column
    that began later), ints as ints, floats to the last bit."""
    rows = [
        {"epoch": 1, "alpha": 1.0, "lr": 0.1 / 3, "val_acc": 0.9652777910232544},
        {"epoch": 2, "alpha": 0.0, "lr": 1e-7, "val_acc": 1.0, "val_acc_start": 0.25},
    ]
    path = tmp_path / "steps.csv"
    write_csv(path, rows)
    ours, theirs = read_csv(path), pd.read_csv(path).to_dict("records")
    assert [row.keys() for row in ours] == [row.keys() for row in theirs]
    assert math.isnan(ours[0]["val_acc_start"]) and math.isnan(theirs[0]["val_acc_start"])
    for a, b in zip(ours, theirs, strict=True):
        assert {k: v for k, v in a.items() if v == v} == {k: v for k, v in b.items() if v == v}
    assert [type(row["epoch"]) for row in ours] == [int, int]
    assert ours[1]["lr"] == 1e-7 and ours[0]["lr"] == 0.1 / 3
