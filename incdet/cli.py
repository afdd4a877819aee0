"""The ``incdet`` console script: finds the sub-commands in ``incdet.commands`` and runs one.

Exit codes: 0 success (a batch job may still have skipped and reported some items);
1 a batch job could process none of its items; 2 bad usage or bad input for the whole job (or
the system failing it, e.g. a full disk); 130 interrupted (Ctrl-C; rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import incdet.commands
from incdet.errors import InputError

DESCRIPTION = ("GoogLeNet-style object detection: selective search + MultiBox proposals -> an ensemble of Inception "
               "region classifiers -> NMS, with the ILSVRC-DET evaluator and Lightning training. Exit codes: 0 done "
               "(bad items skipped and listed), 1 nothing could be processed, 2 bad input, 130 interrupted.")


COMMANDS = sorted(info.name for info in pkgutil.iter_modules(incdet.commands.__path__) if not info.name.startswith("_"))  # the rest are shared helpers


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of command ``only`` alone (its module alone imported)."""
    parser = argparse.ArgumentParser(prog="incdet", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in [only] if only else COMMANDS:
        importlib.import_module(f"incdet.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # A command named first is the only one imported: some commands' modules import torch (a second),
    # which `incdet detect` would wait for before starting its workers (incdet.commands._batch.start_workers).
    named = argv[0].replace("-", "_") if argv else None  # `incdet eval-cls` is the module eval_cls
    args = build_parser(named if named in COMMANDS else None).parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"incdet: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("incdet: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # the system failing mid-run (a full disk, a vanished mount): one line, not a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"incdet: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
