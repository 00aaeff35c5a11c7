"""Core subcommands: synth, train, transform, demo."""

from __future__ import annotations


def register(subparsers) -> None:
    """Add the core subcommands to the `sola` parser."""
