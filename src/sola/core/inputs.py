"""Input files: the one check of a path a command reads as a file, with one message per way it is wrong.

    input_file("ann.json", "annotation file", AnnotationError)   # -> Path, or raises

Every loader that takes a file (annotations, metadata, predictions, configs, adapters, feature files) asks
here first, so that a directory, `/dev/null` or a link to nothing gets the same plain message everywhere.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from sola.core.errors import SolaError


def file_kind(path: str | os.PathLike) -> str | None:
    """What `path` is when it is not a regular file (or a link to one), from its metadata alone, else None:
    "missing", "a link to X, which does not exist", "a loop of symbolic links", "cannot be read (...)",
    "a directory", "a named pipe (FIFO)", "a character device", "a block device", "a socket". Never opens it:
    reading a FIFO blocks forever and a link to `/dev/zero` never ends."""
    try:
        mode = os.stat(path).st_mode  # follows links
    except FileNotFoundError:
        return f"a link to {os.readlink(path)}, which does not exist" if os.path.islink(path) else "missing"
    except OSError as exc:
        return "a loop of symbolic links" if exc.errno == errno.ELOOP else f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
                                         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                                         (stat.S_ISSOCK, "a socket")) if test(mode)), "a special file")


def input_problem(path: str | os.PathLike) -> str | None:
    """What keeps `path` from being read as a file ("does not exist", "is a directory; give a file", "is not a
    regular file (a named pipe (FIFO)); give a file", ...), or None for a regular file (or a link to one)."""
    kind = file_kind(path)
    if kind is None:
        return None
    if kind == "missing":
        return "does not exist"
    if kind.startswith("a link to"):
        return f"is {kind}; fix the link or give the file itself"
    if kind.startswith(("a loop", "cannot")):
        return f"is {kind}" if kind.startswith("a loop") else kind
    if kind == "a directory":
        return "is a directory; give a file"
    return f"is not a regular file ({kind}); give a file"


def input_file(path: str | os.PathLike, what: str, error: type[SolaError] = SolaError) -> Path:
    """`path` as a Path when it is a regular file; raises `error` "WHAT PATH is a directory; give a file" etc."""
    problem = input_problem(path)
    if problem is not None:
        raise error(f"{what} {path} {problem}")
    return Path(path)
