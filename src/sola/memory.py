"""Give freed heap memory back to the operating system during long per-video loops.

glibc's allocator raises its mmap threshold after the first large free, so later per-video
arrays (a few MB each) come from the heap, and the pages of freed arrays stay resident:
`sola transform` grew from 781 MB on a 2 GB store to 1,002 MB on a 30 GB one. `malloc_trim(0)`
returns every free page; calling it every few dozen videos bounds the growth by what those
videos allocate, whatever the store's size, at a small cost in page faults (measured in
`benchmarks/scale_memory.py`). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

TRIM_EVERY = 32  # videos between two trims: about 5% slower than never, measured on a 2 GB store


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


class PeriodicTrim:
    """Call `tick()` once per item of a loop: every `every` items it releases freed memory."""

    def __init__(self, every: int = TRIM_EVERY) -> None:
        self.every, self.count = every, 0

    def tick(self) -> None:
        """Count one item; release freed memory when `every` items have passed since the last time."""
        self.count += 1
        if self.count % self.every == 0:
            release_freed_memory()
