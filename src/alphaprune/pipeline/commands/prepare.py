"""`alphaprune prepare`: decode the dataset once into a tensor file and its card."""

from __future__ import annotations

import logging
from pathlib import Path

from alphaprune.pipeline.commands._shared import (
    add_params_arguments,
    add_record_argument,
    load,
    write_record,
)
from alphaprune.pipeline.data.prepared import save_data
from alphaprune.pipeline.data.sources import prepare
from alphaprune.pipeline.provenance.records import source_digest

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    add_params_arguments(p)
    add_record_argument(p)
    p.add_argument("--out", type=Path, required=True, help="the .pt file (card: .json beside)")


def run(args) -> None:
    params = load(args)
    prepared = prepare(params.data, params.seed)
    # What the Snakefile compares data.root with (`data_changed`): its bytes, not its times.
    prepared.card["source_digest"] = source_digest(params.data.root)
    save_data(prepared, args.out)
    card = prepared.card
    log.info(
        "prepared %s: %d train, %d val, %d test",
        card["name"],
        card["n_train"],
        card["n_val"],
        card["n_test"],
    )
    write_record(args, "prepare")
