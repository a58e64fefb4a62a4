"""Files on disk, written atomically: a write goes to a temporary file in the same folder,
renamed into place, so a kill at any instant leaves either the previous complete file or the
new complete one. No torch here (what Snakemake loads to plan a run imports this): torch files
are `alphaprune.torchfiles`."""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


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


def write_csv(path: str | Path, rows: list[dict]) -> None:
    """`rows` as CSV: a column per key in the order keys first appear, empty where a row has
    none (or None), floats as Python writes them (what pandas writes too; the csv module
    spares a job pandas' 0.3 s import)."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _cell(text: str) -> int | float | str:
    """A CSV cell as pandas reads it: an int, a float (NaN where empty), or else the text."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return math.nan if text == "" else text


def read_csv(path: str | Path) -> list[dict]:
    """The rows of a CSV file with a header (what `write_csv` writes), a dict per row, numbers
    parsed: pandas' `read_csv(path).to_dict("records")` for a table of numbers, without its
    0.3 s import."""
    with Path(path).open(newline="") as f:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(f)]
