"""Torch files: read weights-only, with their format and version checked and the file named."""

from __future__ import annotations

import pytest
import torch

from alphaprune.errors import FileFormatError
from alphaprune.torchfiles import safe_load, torch_save


def test_safe_load_checks_format_and_version_and_names_the_file(tmp_path):
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
