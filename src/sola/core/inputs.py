"""Input files: the one check of a path a command reads as a file, with one message per way it is wrong.

    input_file("ann.json", "annotation file", AnnotationError)   # -> Path, or raises

Every loader that takes a file (annotations, metadata, predictions, configs, adapters, feature files) asks
here first, so that a directory, `/dev/null` or a link to nothing gets the same plain message everywhere.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sola.core.errors import SolaError


def input_problem(path: str | os.PathLike) -> str | None:
    """What keeps `path` from being read as a file ("does not exist", "is a directory; give a file", "is not a
    regular file (a FIFO)...": never opened, a FIFO would block), or None for a regular file (or a link to one)."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return f"is a link to {os.readlink(path)}, which does not exist; fix the link or give the file itself"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(mode):
        return "is a directory; give a file"
    if not stat.S_ISREG(mode):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a special file")
        return f"is not a regular file ({kind}); give a file"
    return None


def input_file(path: str | os.PathLike, what: str, error: type[SolaError] = SolaError) -> Path:
    """`path` as a Path when it is a regular file; raises `error` "WHAT PATH is a directory; give a file" etc."""
    problem = input_problem(path)
    if problem is not None:
        raise error(f"{what} {path} {problem}")
    return Path(path)
