"""Atomic writes: the file appears whole or not at all, with the permissions open() would give."""

from __future__ import annotations

import os
import stat

import pytest

from alphaprune.files import atomic_path, write_json


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
