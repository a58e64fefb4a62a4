"""`alphaprune` — the command line. Thin: parse, validate, call a stage, report.

Every command takes explicit input and output paths (the Snakefile and dvc.yaml pass the same
ones), validates the params before doing anything, and ends a failure with one line naming what
is wrong and exit status 2 (``--debug`` shows the traceback).

Each command lives in `alphaprune.commands.<name>` and only the one named on the command line is
imported: a stage's code is what its command imports, no more (see `alphaprune.codedeps`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from alphaprune import __version__
from alphaprune.errors import UserError

log = logging.getLogger("alphaprune")

COMMANDS = {  # name -> one line of help; the module is alphaprune.commands.<name>
    "check": "validate params and print every variant's full settings",
    "prepare": "decode the dataset once into a tensor file + card",
    "pretrain": "train the teacher",
    "prune": "prune the teacher with one variant's recipe",
    "evaluate": "measure a student against its teacher",
    "plots": "draw the figures of every variant",
    "report": "write the Markdown report",
    "compare": "the variants side by side: workspace, a DVC experiment, or two",
    "unlock": "remove the lock a killed Snakemake run left (if no run is alive here)",
    "plan": "show which layers a budget prunes, without training",
    "bench": "time fit against a plain PyTorch loop, the blend, the student",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported to add its arguments."""
    p = argparse.ArgumentParser(prog="alphaprune", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=__version__)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help in COMMANDS.items():
        sp = sub.add_parser(name, help=help, description=help)
        if name == command:
            module = importlib.import_module(f"alphaprune.commands.{name}")
            module.add_arguments(sp)
            sp.set_defaults(run=module.run)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)  # fmt: skip
    # torch.utils.benchmark's import warns that a CPU-only machine has no CUDA: not news here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        args.run(args)
    except (UserError, FileNotFoundError) as err:
        if args.debug:
            raise
        print(f"alphaprune {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
