"""Give freed heap memory back to the operating system during long per-video loops.

glibc's allocator raises its mmap threshold after the first large free, so later per-video
arrays (a few MB each) come from the heap, and the pages of freed arrays stay resident:
`sola transform` grew from 781 MB on a 2 GB store to 1,002 MB on a 30 GB one. `malloc_trim(0)`
returns every free page; `HeapTrim` calls it whenever the process has grown by 64 MB since the
last call, which bounds the peak whatever the store's size (2 GB store: 416 MB instead of 747 MB,
up to about 10% slower; 30 GB store: 440 MB against 429 MB on 2 GB, `benchmarks/scale_memory.py`). Elsewhere than glibc (or without `/proc`) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from functools import lru_cache

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
