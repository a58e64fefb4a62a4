"""Keeps dvc.yaml's generated lists current (`make dvc-code`): each stage's code dep (its
manifest, `results/code/<stage>.md5`, which the `code` stage writes: `alphaprune code`) and its
`params:` (the keys `records.STAGE_PARAMS` names, which the Snakefile and the stages' records read
too). DVC cannot read such a list from another file (it validates `deps` before interpolating), so
it is written out, from the one list the code has.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alphaprune.pipeline.provenance.codedeps import STAGES
from alphaprune.pipeline.provenance.manifests import MANIFESTS
from alphaprune.pipeline.provenance.records import STAGE_PARAMS


def expected_code_deps() -> dict[str, list[str]]:
    """stage -> the code deps dvc.yaml should list: the stage's manifest."""
    return {stage: [f"{MANIFESTS}/{stage}.md5"] for stage in STAGES}


def expected_manifests() -> list[str]:
    """The `code` stage's outputs: every stage's manifest."""
    return [dep for deps in expected_code_deps().values() for dep in deps]


def listed_manifests(dvc_yaml: Path) -> list[str]:
    """The `code` stage's outputs as `dvc_yaml` lists them now."""
    import yaml

    return list(yaml.safe_load(dvc_yaml.read_text())["stages"]["code"]["outs"])


def _is_code(dep, src: str = "src") -> bool:
    """A code dep: a manifest, or a source file (as dvc.yaml listed them before the manifests)."""
    return str(dep).startswith((f"{MANIFESTS}/", f"{src}/"))


def expected_params() -> dict[str, list[str]]:
    """stage -> the params keys dvc.yaml should list (a matrix stage's variant as DVC names it)."""
    return {
        stage: [key.replace("{variant}", "${item.variant}") for key in keys]
        for stage, keys in STAGE_PARAMS.items()
    }


def _body(stage: dict) -> dict:
    return stage["do"] if "do" in stage else stage  # foreach stages nest under do


def _deps(body: dict) -> list:
    return _body(body)["deps"]


def listed_params(dvc_yaml: Path) -> dict[str, list[str]]:
    """stage -> the params keys `dvc_yaml` lists now."""
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {s: list(_body(b).get("params") or []) for s, b in stages.items() if s in STAGES}


def listed_code_deps(dvc_yaml: Path, src: str = "src") -> dict[str, list[str]]:
    """stage -> the code deps `dvc_yaml` lists now."""
    import yaml

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {s: [d for d in _deps(b) if _is_code(d, src)] for s, b in stages.items() if s in STAGES}


def sync_dvc_yaml(dvc_yaml: Path, src: str = "src") -> bool:
    """Rewrite each stage's code deps (its manifest, or entries under `src/`) and params keys, and
    the `code` stage's outputs (every manifest), in `dvc_yaml`, keeping all else, comments
    included (see `_replace`); True if the file changed."""
    from ruamel.yaml import YAML  # DVC's own YAML library: a round trip keeps the comments

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)  # the file's own style: "  - item"
    doc = yaml.load(dvc_yaml.read_text())
    changed = False
    for stage, code in expected_code_deps().items():
        deps = _deps(doc["stages"][stage])
        old = [i for i, d in enumerate(deps) if _is_code(d, src)]
        if [deps[i] for i in old] == code:
            continue
        _replace(deps, old, code)
        changed = True
    outs = doc["stages"]["code"]["outs"]
    if list(outs) != expected_manifests():
        _replace(outs, list(range(len(outs))), expected_manifests())
        changed = True
    for stage, keys in expected_params().items():
        params = _body(doc["stages"][stage])["params"]
        if list(params) != keys:
            _replace(params, list(range(len(params))), keys)
            changed = True
    if changed:
        with dvc_yaml.open("w") as f:
            yaml.dump(doc, f)
    return changed


def _replace(seq, old: list[int], new: list[str]) -> None:
    """The entries of `seq` at the (consecutive) indexes `old` replaced by `new`. ruamel keeps a
    comment line after an entry with that entry: the comment after the last one replaced stays
    after the last new one; a comment between replaced entries is not kept (notes belong above
    the key, or at the end of a line that is not generated)."""
    at = old[0] if old else 0
    trailing = seq.ca.items.get(old[-1]) if old else None
    for i in reversed(old):
        del seq[i]
    for offset, item in enumerate(new):
        seq.insert(at + offset, item)
    if trailing is not None and new:
        seq.ca.items[at + len(new) - 1] = trailing


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m alphaprune.pipeline.provenance.dvcyaml",
        description="Write each stage's code manifest and params keys into dvc.yaml (run it from "
        "the project root).",
    )
    p.add_argument("dvc_yaml", type=Path, nargs="?", default=Path("dvc.yaml"))
    p.add_argument("--check", action="store_true", help="only report; exit 1 if out of date")
    args = p.parse_args(argv)
    if not args.check:
        changed = sync_dvc_yaml(args.dvc_yaml)
        print(f"{args.dvc_yaml}: {'updated' if changed else 'up to date'}")
        return 0
    expected, listed = expected_code_deps(), listed_code_deps(args.dvc_yaml)
    keys, listed_keys = expected_params(), listed_params(args.dvc_yaml)
    stale = {
        "code deps": [s for s in STAGES if listed.get(s) != expected[s]],
        "params": [s for s in STAGES if listed_keys.get(s) != keys[s]],
        "outputs (the manifests)": ["code"]
        if listed_manifests(args.dvc_yaml) != expected_manifests()
        else [],
    }
    for what, stages in stale.items():
        if stages:
            print(
                f"{args.dvc_yaml}: the {what} of {', '.join(stages)} are out of date; run "
                f"`make dvc-code` (python -m alphaprune.pipeline.provenance.dvcyaml)",
                file=sys.stderr,
            )
    return 1 if any(stale.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
