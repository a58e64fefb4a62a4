"""Keys of params files that earlier releases read and this one does not (CHANGELOG.md), and
what took their place: `loader` names them in its error instead of a bare "unknown key"."""

from __future__ import annotations

from typing import NamedTuple


class Retired(NamedTuple):
    """A key an earlier release read: the first release without it, and what took its place."""

    release: str
    replaced_by: str  # the key path (or paths) that does its job now
    why: str


# Keys earlier releases read and this one does not (CHANGELOG.md). A file that still uses one is
# rejected as any unknown key is (read silently as its successor, it would run another release's
# recipe under this one's name), but its error names the successor and the release. A `prune.`
# key applies to every variant's overrides as well.
RETIRED_KEYS: dict[str, Retired] = {
    "eval.latency_repeats": Retired(
        "0.2.0", "latency.seconds", "a timing repeats the forward pass for a time, not a count"
    ),
    "eval.latency_seconds": Retired(
        "0.2.0", "latency.seconds", "students are timed in their own stage, `alphaprune latency`"
    ),
    "eval.latency_batch": Retired(
        "0.2.0",
        "latency.batch and latency.throughput_batch",
        "students are timed in their own stage, at a latency batch and a throughput batch",
    ),
}


def retired(path: list) -> Retired | None:
    """The entry of RETIRED_KEYS for the key at `path` (a variant's key as the `prune` key)."""
    if len(path) > 2 and path[0] == "variants":
        path = ["prune", *path[2:]]
    return RETIRED_KEYS.get(".".join(map(str, path)))
