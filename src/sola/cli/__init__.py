"""The `sola` command: thin wrappers that parse arguments, call the library and print.

Each area registers its subcommands from its own module (`sola.cli.<area>.register`), so the
command line grows without one large file. Any `SolaError` becomes one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from sola import __version__
from sola.errors import SolaError

# Modules that add subcommands; each defines `register(subparsers)`.
COMMAND_MODULES = [
    "sola.cli.core",
    "sola.cli.evaluate",
    "sola.cli.data",
    "sola.cli.extract",
    "sola.cli.tal",
    "sola.cli.compare",
]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (all subcommands)."""
    parser = argparse.ArgumentParser(
        prog="sola",
        description="SoLa (Soft-Landing): unsupervised temporal adapters for frozen video features.",
    )
    parser.add_argument("--version", action="version", version=f"sola {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `sola` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SolaError as exc:
        print(f"sola {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sola {args.command}: interrupted; rerun the same command (with --resume for training) to continue",
              file=sys.stderr)
        return 130
