"""Atomic file output: write to a temporary file beside the target, fsync, rename.

A reader never sees a half-written file, and a job killed at any moment leaves either the old
file or the new one (plus, at worst, a stray `.tmp` file that the next run ignores). JSON is
written strictly (`json_text`): a non-finite number becomes null, never `NaN`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator


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
    """The same error about `path` (the file the user asked for) instead of its temporary, its errno kept.

    A short write (NumPy's `tofile` says "N requested and M written", with no errno) is what a full
    disk looks like there: it becomes ENOSPC when the disk has less room than was asked for.
    """
    number, reason = exc.errno, exc.strerror
    if number is None:
        number = _short_write_errno(exc, path)
        text = str(exc.args[0]) if exc.args else type(exc).__name__
        reason = os.strerror(number) if number == errno.ENOSPC else text
    if exc.filename is None or str(exc.filename).endswith(".tmp") or number in (errno.ENOSPC, errno.EDQUOT):
        named = OSError(number, reason, str(path))  # OSError picks the subclass of the errno (PermissionError, ...)
    else:
        named = OSError(number, reason, exc.filename, exc.filename2)
    return named.with_traceback(exc.__traceback__)


_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")


def _short_write_errno(exc: OSError, path: Path) -> int | None:
    """ENOSPC for a short write onto a disk without room for what was asked, EIO for other short writes."""
    found = _SHORT_WRITE.search(str(exc.args[0]) if exc.args else "")
    if found is None:
        return None
    requested, written = int(found.group(1)), int(found.group(2))
    try:
        disk = os.statvfs(path.parent)
        room = disk.f_bavail * disk.f_frsize
    except OSError:
        return errno.EIO
    return errno.ENOSPC if room < requested - written + (1 << 20) else errno.EIO


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


def json_ready(value: Any) -> Any:
    """A copy of nested dicts/lists/tuples with every non-finite float (NaN, +-Inf) as None."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):  # NumPy float64 is a float too
        return None
    if hasattr(value, "dtype") and getattr(value, "shape", None) == () and value.dtype.kind == "f":
        return json_ready(float(value))  # NumPy float16/32 scalars
    return value


def json_text(value: Any, **options: Any) -> str:
    """Strict JSON text of `value` (`json.dumps` options): non-finite floats are written as null, never as
    the `NaN`/`Infinity` that JSON does not have (every JSON file sola writes goes through here)."""
    return json.dumps(json_ready(value), allow_nan=False, **options)


def atomic_write_json(path: str | os.PathLike, value: Any, **options: Any) -> None:
    """Write `json_text(value, **options)` plus a newline to `path` atomically."""
    atomic_write_text(path, json_text(value, **options) + "\n")


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete `.NAME.*.tmp` leftovers of killed writers in `directory`; return how many."""
    count = 0
    directory = Path(directory)
    if directory.is_dir():
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
            count += 1
    return count
