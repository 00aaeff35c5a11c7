"""Input files: the one check of a path a command reads as a file, with one message per way it is wrong.

    input_file("ann.json", "annotation file", AnnotationError)   # -> Path, or raises

Every loader that takes a file (annotations, metadata, predictions, configs, adapters, feature files) asks
here first, so that a directory, `/dev/null` or a link to nothing gets the same plain message everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from sola.core.errors import SolaError


def input_problem(path: str | os.PathLike) -> str | None:
    """What keeps `path` from being read as a file ("does not exist", "is a directory; give a file", ...),
    or None for a regular file (or a link to one)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"is a link to {os.readlink(path)}, which does not exist; fix the link or give the file itself"
    if not path.exists():
        return "does not exist"
    if path.is_dir():
        return "is a directory; give a file"
    if not path.is_file():
        return "is not a regular file (a device or a pipe); give a file"
    return None


def input_file(path: str | os.PathLike, what: str, error: type[SolaError] = SolaError) -> Path:
    """`path` as a Path when it is a regular file; raises `error` "WHAT PATH is a directory; give a file" etc."""
    problem = input_problem(path)
    if problem is not None:
        raise error(f"{what} {path} {problem}")
    return Path(path)
