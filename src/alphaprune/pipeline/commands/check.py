"""`alphaprune check`: validate params files, print every variant's full settings and say
whether each α schedule fits its epoch budget."""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from alphaprune.files import atomic_path
from alphaprune.pipeline.commands._shared import add_params_arguments, load, params_files
from alphaprune.pipeline.params.loader import merge_files

log = logging.getLogger("alphaprune")


def add_arguments(p) -> None:
    add_params_arguments(p)
    p.add_argument(
        "--write",
        type=Path,
        metavar="FILE",
        help="write the merged params (e.g. a preset over params.yaml) to FILE",
    )


def run(args) -> None:
    params = load(args)  # validates: a bad file ends here with one line
    files = params_files(args)
    if args.write:
        raw = merge_files(files, args.set)
        with atomic_path(args.write) as tmp:
            tmp.write_text(yaml.safe_dump(raw, sort_keys=False))
        log.info("wrote the merged params to %s", args.write)
        return
    grid = {name: cfg.model_dump(mode="json") for name, cfg in params.variants.items()}
    print(yaml.safe_dump({"variants": grid}, sort_keys=False), end="")
    # Whether each schedule reaches its last α before the fine-tune epochs (else α drops to 0
    # from wherever it is: the abrupt replacement the method exists to avoid).
    for name, cfg in params.variants.items():
        fit = cfg.budget_fit()
        if fit.certain:
            log.warning("warning: %s", fit.message(name))
        else:
            log.info("%s", fit.message(name))
    for key in ("replicates",):  # dvc.yaml interpolates them from params.yaml itself
        if key not in args.raw_params:
            log.warning(
                "warning: no `%s` key: DVC reads it from params.yaml to expand the "
                "pipeline (`dvc repro` fails without it); add e.g. `replicates: "
                "{seeds: [0], teachers: [0]}`",
                key,
            )
    runs = len(params.replicates.runs())
    log.info("%s: valid; %d variants x %d replicates", " + ".join(map(str, files)), len(grid), runs)
