"""What the commands share: the params arguments and their loading, the seed and record
arguments, and the record a stage writes when it ends. (A module whose name starts with _ is
not a command.)"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alphaprune.pipeline.params.schema import Params

# The params machinery (pydantic, yaml) is imported where it is used: a command reading no params
# (`alphaprune unlock`, the first thing `make run` does) need not wait for it.


def add_params_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--params",
        type=Path,
        action="append",
        metavar="FILE",
        help="params file (default params.yaml); repeat to merge a preset over it",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params key, e.g. prune.amount=0.5",
    )


def params_files(args: argparse.Namespace) -> list[Path]:
    return args.params or [Path("params.yaml")]


def load(args: argparse.Namespace) -> Params:
    """The validated params of `--params` files and `--set` overrides. The files are read once:
    the record a stage writes when it ends holds these values, even if a file is edited while
    the stage runs."""
    from alphaprune.pipeline.params.loader import merge_files, resolve

    files = params_files(args)
    args.raw_params = merge_files(files, args.set)
    return resolve(args.raw_params, source=" + ".join(map(str, files)))


def add_seed_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help=f"the seed of {what} (the pipeline passes each of replicates' seeds in turn)",
    )


def add_record_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="on success, write to FILE the values of the params keys this stage depends on "
        "(those dvc.yaml declares for it): the pipeline compares them with the params files to "
        "tell what to rerun",
    )


def write_record(args: argparse.Namespace, stage: str, variant: str | None = None) -> None:
    """The record of `--record`, written last: it exists only beside complete outputs. It holds
    the values of the params keys dvc.yaml declares for the stage, as `load` read them."""
    from alphaprune.files import write_json
    from alphaprune.pipeline.provenance.records import stage_values
    from alphaprune.world import environment

    if args.record and environment().main:  # one of a run's processes writes it
        write_json(args.record, stage_values(args.raw_params, stage, variant))
