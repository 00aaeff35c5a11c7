"""Releasing freed heap memory during long per-video loops (sola.memory)."""

import platform

import pytest

from sola import memory


def test_periodic_trim_releases_every_n_items(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: calls.append(1) or True)
    trim = memory.PeriodicTrim(every=3)
    for _ in range(10):
        trim.tick()
    assert len(calls) == 3  # after items 3, 6 and 9


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_release_freed_memory_calls_glibc():
    assert memory.release_freed_memory() is True
