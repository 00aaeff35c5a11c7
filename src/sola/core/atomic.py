"""Atomic file output: write to a temporary file beside the target, fsync, rename.

A reader never sees a half-written file, and a job killed at any moment leaves either the old
file or the new one (plus, at worst, a stray `.tmp` file that the next run ignores).
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success fsync it and rename it onto `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _naming(exc, path)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:  # a full disk, a directory in the way: name the output, not the temporary
        raise _naming(exc, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _naming(exc: OSError, path: Path) -> OSError:
    """The same error about `path` (the file the user asked for) instead of its temporary."""
    if exc.filename is None or str(exc.filename).endswith(".tmp") or exc.errno in (errno.ENOSPC, errno.EDQUOT):
        exc.filename, exc.filename2 = str(path), None
    return exc


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write text to `path` atomically."""
    atomic_write_bytes(path, text.encode())


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete `.NAME.*.tmp` leftovers of killed writers in `directory`; return how many."""
    count = 0
    directory = Path(directory)
    if directory.is_dir():
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
            count += 1
    return count
