"""`alphaprune` — the command line. Thin: parse, validate, call a stage, report.

Every command takes explicit input and output paths (the Snakefile and dvc.yaml pass the same
ones), validates the params before doing anything, and ends a failure with one line naming what
is wrong and exit status 2 (``--debug`` shows the traceback).

Each command is a module of `alphaprune.pipeline.commands`, found there (its help is the first
line of its docstring, read without importing it), and only the one named on the command line is
imported: a stage's code is what its command imports, no more (see `codedeps`), and adding a
command changes no stage's code.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import logging
import os
import pkgutil
import sys
from pathlib import Path

from alphaprune import __version__
from alphaprune.errors import UserError

log = logging.getLogger("alphaprune")
COMMANDS = Path(__file__).parent / "commands"


def commands() -> dict[str, str]:
    """Command name -> one line of help: the first docstring line of each command module,
    "`alphaprune <name>`: <help>"."""
    found = {}
    for module in pkgutil.iter_modules([str(COMMANDS)]):
        if module.name.startswith("_"):  # what the commands share
            continue
        doc = ast.get_docstring(ast.parse((COMMANDS / f"{module.name}.py").read_text())) or ""
        found[module.name] = doc.split("\n", 1)[0].split(": ", 1)[-1].rstrip(".")
    return found


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only `command`'s module is imported to add its arguments."""
    p = argparse.ArgumentParser(prog="alphaprune", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=__version__)
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help in commands().items():
        sp = sub.add_parser(name, help=help, description=help)
        if name == command:
            module = importlib.import_module(f"alphaprune.pipeline.commands.{name}")
            module.add_arguments(sp)
            sp.set_defaults(run=module.run)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    args.argv = argv  # to start the command again in several processes (`launch`)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # torch.utils.benchmark's import warns that a CPU-only machine has no CUDA: not news here.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    try:
        args.run(args)
    except (UserError, FileNotFoundError) as err:
        if args.debug:
            raise
        print(f"alphaprune {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `alphaprune plan ... | head`: the reader has all it wants
        # (Python's advice: point stdout at devnull so that its flush at exit cannot fail again)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # as a shell reports a process killed by SIGPIPE
    return 0


if __name__ == "__main__":
    sys.exit(main())
