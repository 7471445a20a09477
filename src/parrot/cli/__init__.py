"""The `parrot` command: parse arguments, call the Python API, print.

Each command group lives in its own module with a `register(subparsers)` function that
adds its parsers and sets `run=<function(args) -> int | None>`. A `ParrotError` (a user's
mistake) becomes one line on stderr and its exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from parrot.errors import ParrotError

# Modules under parrot.cli that contribute commands, in help order.
COMMAND_MODULES = (
    "demo",
    "tokenizer",
    "generate",
    "chat",
    "train",
    "hub",
    "viz",
    "serve",
    "finetune",
    "encoder",
    "seq2seq",
    "reward",
    "align",
    "tools",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parrot", description="A complete, readable, fast LLM system."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"parrot.cli.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except ParrotError as err:
        print(f"parrot: error: {err.message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("parrot: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
