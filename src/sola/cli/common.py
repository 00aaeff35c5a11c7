"""Arguments shared by several subcommands (how to open a feature store)."""

from __future__ import annotations

import argparse


def add_store_arguments(parser: argparse.ArgumentParser, name: str = "features") -> None:
    """Add FEATURES plus --layout/--prefix/--suffix to a subcommand."""
    parser.add_argument(name, help="feature store: a directory of per-video files or one file")
    parser.add_argument("--layout", default=None, help="force the feature layout instead of detecting it")
    parser.add_argument("--prefix", default=None, help="file-name prefix before the video id (e.g. v_)")
    parser.add_argument("--suffix", default=None, help="file-name suffix after the video id (before .npy)")


def store_from_args(args: argparse.Namespace, name: str = "features"):
    """Open the feature store described by `add_store_arguments`."""
    from sola.stores import open_store

    options = {key: getattr(args, key) for key in ("prefix", "suffix") if getattr(args, key, None) is not None}
    return open_store(getattr(args, name), layout=args.layout, **options)
