"""Torch files on disk: written atomically (`alphaprune.files`), read safely. A read
(`safe_load`) runs no pickled code and checks the file's format and version, and every way it
can fail is one `FileFormatError` naming the file."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from alphaprune.errors import FileFormatError
from alphaprune.files import atomic_path


def torch_save(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def safe_load(
    path: str | Path,
    what: str,
    *,
    format: str | None,
    version: int | None,
    hint: str = "",
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """The mapping a `torch_save`d file holds, read with ``weights_only=True`` (tensors and plain
    data only: a file with pickled code is refused before any of it runs), whose ``format`` key
    is `format` and ``format_version`` is `version` (None: not checked). `what` names the file
    in errors ("model file"); `hint`, what to do about a bad one."""
    path = Path(path)
    fix = f"; {hint}" if hint else ""
    if not path.exists():
        raise FileFormatError(f"{path}: no such {what}{fix}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
        raise FileFormatError(
            f"{path}: refused: the file holds objects other than tensors and plain data "
            f"(possibly code); not loading it ({first}){fix}"
        ) from None
    except Exception as err:  # noqa: BLE001 - truncated, or not a torch file at all
        raise FileFormatError(
            f"{path}: not a readable {what} ({type(err).__name__}){fix}"
        ) from None
    old = isinstance(blob, dict) and "format" not in blob and "format_version" in blob
    if not isinstance(blob, dict) or (format is not None and blob.get("format") != format):
        if not (old and version is not None):  # else: an older version, said so below
            raise FileFormatError(f"{path}: not an alphaprune {what}{fix}")
    if version is not None and blob.get("format_version") != version:
        raise FileFormatError(
            f"{path}: format version {blob.get('format_version')}, this alphaprune reads "
            f"{version}{fix}"
        )
    return blob
