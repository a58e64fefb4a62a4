"""Files on disk: written atomically, read safely.

A write goes to a temporary file in the same folder, renamed into place: a kill at any instant
leaves either the previous complete file or the new complete one. A read of a torch file
(`safe_load`) runs no pickled code and checks the file's format and version, and every way it
can fail is one `FileFormatError` naming the file."""

from __future__ import annotations

import glob
import json
import os
import pickle
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from alphaprune.errors import FileFormatError


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A killed writer's temporary (SIGKILL skips cleanup): exactly mkstemp's name for this file.
    stale = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")
    for old in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        if stale.fullmatch(old.name):
            old.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process umask, read without changing it where Linux allows (no race with threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


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
