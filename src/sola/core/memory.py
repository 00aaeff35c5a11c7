"""Give freed heap memory back to the operating system during long per-video loops.

glibc's allocator raises its mmap threshold after the first large free, so later per-video
arrays (a few MB each) come from the heap, and the pages of freed arrays stay resident:
`sola transform` grew from 781 MB on a 2 GB store to 1,002 MB on a 30 GB one. `malloc_trim(0)`
returns every free page; `HeapTrim` calls it whenever the process has grown by 64 MB since the
last call, which bounds the peak whatever the store's size (2 GB store: 416 MB instead of 747 MB,
up to about 10% slower; 30 GB store: 440 MB against 429 MB on 2 GB, `benchmarks/scale_memory.py`). Elsewhere than glibc (or without `/proc`) it does nothing.

Before anything is allocated from a size a user gave (a config key, a flag), `require_memory` compares an
estimate of the bytes with this machine's memory and refuses, with both figures, what cannot fit
("adapter.hidden_dim=1e+12 needs 4e+12 TB; this machine has 24 GB"); `require_disk` does the same for
what a command will write.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from functools import lru_cache
from pathlib import Path

from sola.core.errors import ConfigError

TRIM_MARGIN = 64 << 20  # bytes of growth allowed before freed pages are released
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl, Windows): nothing to do
        return None


def release_freed_memory() -> bool:
    """Return the heap's free pages to the OS; True where the C library offers it (glibc)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def resident_bytes() -> int | None:
    """This process's resident set size in bytes (Linux `/proc/self/statm`), None where unknown."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None


class HeapTrim:
    """Call `tick()` once per item of a loop: it releases freed memory when the process has grown.

    After each item the resident size is compared with what it was after the last release; once it
    exceeds that by `margin` bytes, freed pages go back to the OS. The peak is then bounded by the
    live data plus `margin` plus one item's working set, whatever the number of items, and the
    release (and the page faults after it) happens only as often as memory actually grows.
    """

    def __init__(self, margin: int = TRIM_MARGIN) -> None:
        self.margin = margin
        self.floor = resident_bytes()

    def tick(self) -> None:
        """Release freed memory if the process grew by more than `margin` since the last release."""
        if self.floor is None:
            return
        now = resident_bytes()
        if now is not None and now > self.floor + self.margin:
            release_freed_memory()
            self.floor = resident_bytes() or now


@lru_cache(maxsize=1)
def total_memory_bytes() -> int | None:
    """This machine's physical memory in bytes (`/proc/meminfo` MemTotal, else `sysconf`), None where unknown."""
    try:
        with open("/proc/meminfo", "rb") as handle:
            for line in handle:
                if line.startswith(b"MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def format_bytes(count: float) -> str:
    """`16e12` -> "16 TB" (decimal units, three significant digits; beyond TB in TB)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(count) < 1000:
            return f"{count:.3g} {unit}"
        count /= 1000
    return f"{count:.3g} TB"


def require_memory(nbytes: float, what: str, fix: str = "") -> None:
    """Raise `ConfigError` "WHAT needs N GB; this machine has M GB" when `nbytes` exceed the machine's memory.

    `nbytes` is a lower bound of what the work allocates, so nothing that fits is refused; `fix` (e.g.
    "lower fit.batch_size") ends the message.
    """
    total = total_memory_bytes()
    if total is not None and nbytes > total:
        raise ConfigError(f"{what} needs {format_bytes(nbytes)}; this machine has {format_bytes(total)} of memory"
                          + (f"; {fix}" if fix else ""))


def require_disk(nbytes: float, path: str | os.PathLike, what: str, fix: str = "") -> None:
    """Raise `ConfigError` when writing about `nbytes` under `path` cannot fit the free space of its disk."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if nbytes > free:
        raise ConfigError(f"{what} writes about {format_bytes(nbytes)}; the disk of {folder} has "
                          f"{format_bytes(free)} free" + (f"; {fix}" if fix else ""))
