"""Atomic writes: the file appears whole or not at all, with the permissions open() would give."""

from __future__ import annotations

import os
import stat

import pytest
import torch

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


# ---------------------------------------------------------------------------- safe_load
def test_safe_load_checks_format_and_version_and_names_the_file(tmp_path):
    from alphaprune.errors import FileFormatError
    from alphaprune.files import safe_load, torch_save

    path = tmp_path / "x.pt"
    torch_save(path, {"format": "f", "format_version": 2, "t": torch.ones(2)})
    assert torch.equal(safe_load(path, "thing", format="f", version=2)["t"], torch.ones(2))
    for kwargs, fragment in (
        ({"format": "g", "version": 2}, "not an alphaprune thing"),
        ({"format": "f", "version": 3}, "format version 2, this alphaprune reads 3"),
    ):
        with pytest.raises(FileFormatError, match=rf"^{tmp_path}/x\.pt: {fragment}; fix it$"):
            safe_load(path, "thing", hint="fix it", **kwargs)
    with pytest.raises(FileFormatError, match="no such thing"):
        safe_load(tmp_path / "missing.pt", "thing", format=None, version=None)
