"""Which params each pipeline stage depends on, and the record of the values it last ran with.

The keys are those dvc.yaml declares per stage (a test keeps the two the same). Every stage
command writes their values to a record (`results/params/...json`) when it succeeds, whichever
tool ran it. That is what keeps Snakemake and DVC in step: DVC compares params.yaml with its own
lock file, and the Snakefile compares it with these records (Snakemake's own params trigger reads
metadata that only Snakemake writes, so after `dvc repro` it would redo DVC's work).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

# stage -> the params keys it depends on ({variant}: the variant's name): dvc.yaml's `params:`.
STAGE_PARAMS = {
    "prepare": ("seed", "data"),
    # The replicates' seeds are not params of a job: they are in its command line and paths.
    "pretrain": ("model", "teacher", "runtime"),
    "prune": ("prune", "variants.{variant}"),
    # prune and the variant too: an edited variant lists evaluate@v beside prune@v in both tools
    "evaluate": ("eval", "prune", "variants.{variant}"),
    "export": (),  # reads no params: it reruns when its student changes, and only then
    "export_teacher": (),  # the same for the teacher
    # runtime.device: timing on CUDA too where the runs train on it
    "latency": ("latency", "runtime.device"),
    "plots": ("variants", "replicates", "eval"),
    "report": ("variants", "replicates", "eval"),
}
LONG_AGO = 946_684_800.0  # 2000-01-01: older than any output


def stage_values(raw: dict[str, Any], stage: str, variant: str | None = None) -> dict[str, Any]:
    """The values of the params keys `stage` depends on, from the merged raw params mapping (the
    same values DVC hashes: an absent key is None)."""
    values = {}
    for key in STAGE_PARAMS[stage]:
        key = key.format(variant=variant)
        node: Any = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[key] = node
    return values


def record_matches(path: str | Path, values: dict[str, Any]) -> bool:
    """Whether the record at `path` says its stage last ran with `values`."""
    try:
        return json.loads(Path(path).read_text()) == json.loads(json.dumps(values))
    except (OSError, ValueError):
        return False  # no record (or a damaged one): the outputs' params are unknown


def set_trigger(path: str | Path, stale: bool, newer_than: float | None = None) -> None:
    """Make the file at `path` tell Snakemake, as an input, whether the job taking it is stale.

    Stale: content never seen before, and modified now, or a second after `newer_than` (the
    record's time) if that is later: a cluster's file server may keep another clock. (Snakemake
    ignores an input newer than the outputs if its checksum equals the one recorded when the
    job last ran, so a new time alone is not enough.) Up to date: modified long ago."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if stale:
        now = time.time()
        path.write_text(f"params changed; noticed at {now!r}\n")
        mtime = max(now, (newer_than or 0) + 1)
    else:
        path.touch()
        mtime = LONG_AGO
    os.utime(path, (mtime, mtime))
