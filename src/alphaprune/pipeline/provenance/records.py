"""Which params each pipeline stage depends on, and the record of the values it last ran with;
and the content digest of the raw data `prepare` reads.

The keys are those dvc.yaml declares per stage (a test keeps the two the same). Every stage
command writes their values to a record (`results/params/...json`) when it succeeds, whichever
tool ran it. That is what keeps Snakemake and DVC in step: DVC compares params.yaml with its own
lock file, and the Snakefile compares it with these records (Snakemake's own params trigger reads
metadata that only Snakemake writes, so after `dvc repro` it would redo DVC's work).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from alphaprune.files import write_json

# The `runtime` keys that can change what a training run computes: where it runs, in what
# precision, compiled or not, and BatchNorm's statistics over the whole batch or a process's
# share. The others (processes, workers, data_placement, jobs_per_gpu, eval_batch_size) say how
# the same computation is spread out; they change float sums' order at most (two processes
# against one: tests/pipeline/stages/test_launch.py), and rerun nothing.
TRAINING_RUNTIME = (
    "runtime.device",
    "runtime.precision",
    "runtime.compile",
    "runtime.sync_batchnorm",
)
# stage -> the params keys it depends on ({variant}: the variant's name): dvc.yaml's `params:`.
STAGE_PARAMS = {
    "prepare": ("seed", "data"),
    # The replicates' seeds are not params of a job: they are in its command line and paths.
    "pretrain": ("model", "teacher", *TRAINING_RUNTIME),
    "prune": ("prune", "variants.{variant}", *TRAINING_RUNTIME),
    # prune and the variant too: an edited variant lists evaluate@v beside prune@v in both
    # tools; the device and precision its forward passes run in (bf16 on CUDA at `auto`)
    "evaluate": ("eval", "prune", "variants.{variant}", "runtime.device", "runtime.precision"),
    "export": (),  # reads no params: it reruns when its student changes, and only then
    "export_teacher": (),  # the same for the teacher
    # the latency table: the model it times, how, and on the latency stage's threads and batch
    "table": ("model", "latency.table", "latency.threads", "latency.throughput_batch"),
    # runtime.device: timing on CUDA too where the runs train on it; the grid: which runs
    "latency": ("latency", "runtime.device", "variants", "replicates"),
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
    if path.is_dir():  # a stage whose jobs had a trigger each before (latency, until 0.3.0)
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if stale:
        now = time.time()
        path.write_text(f"params changed; noticed at {now!r}\n")
        mtime = max(now, (newer_than or 0) + 1)
    else:
        path.touch()
        mtime = LONG_AGO
    os.utime(path, (mtime, mtime))


def source_digest(root: str | Path, cache: str | Path | None = None) -> str | None:
    """A hash of the bytes under `root` (a file, or every file in a folder with its path in it),
    or None if there is nothing there: as DVC hashes a dependency, by content, so that a
    `touch` or a copy without -p (new times, the same bytes) is no change and one byte edited is.

    `cache`: a JSON file of earlier files' hashes, each kept with the size, modification time
    and inode it was read at; only files whose stat differs are read again (a copy of a large
    archive is read once, then only its stat is taken)."""
    root = Path(root)
    if not root.exists():
        return None
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    known = _read_cache(cache)
    fresh, whole = {}, hashlib.sha256()
    for f in files:
        st = f.stat()
        key, stamp = str(f.resolve()), [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = known.get(key)
        digest = entry[1] if entry and entry[0] == stamp else _file_sha256(f)
        fresh[key] = [stamp, digest]
        name = "." if f == root else f.relative_to(root).as_posix()
        whole.update(f"{name}\0{digest}\n".encode())
    if cache is not None and fresh != {k: known.get(k) for k in fresh}:
        write_json(cache, {**known, **fresh})
    return whole.hexdigest()


def _read_cache(cache: str | Path | None) -> dict:
    try:
        return json.loads(Path(cache).read_text()) if cache is not None else {}
    except (OSError, ValueError):
        return {}  # none yet, or damaged: every file is read


def _file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
