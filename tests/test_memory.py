"""Releasing freed heap memory during long per-video loops (sola.core.memory)."""

import platform

import pytest

from sola import memory


def test_heap_trim_releases_only_after_the_process_grew_by_the_margin(monkeypatch):
    sizes = iter([100, 150, 260, 120, 180, 230, 110])  # start, then one reading per tick (and after a release)
    calls = []
    monkeypatch.setattr(memory, "resident_bytes", lambda: next(sizes))
    monkeypatch.setattr(memory, "release_freed_memory", lambda: calls.append(1) or True)
    trim = memory.HeapTrim(margin=100)
    trim.tick()  # 150: grown by 50, kept
    assert calls == []
    trim.tick()  # 260: grown by 160 > 100: released, floor 120 read after it
    assert calls == [1] and trim.floor == 120
    trim.tick()  # 180: within 120 + 100
    trim.tick()  # 230: beyond it
    assert len(calls) == 2


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_release_and_resident_size_work_on_glibc_linux():
    assert memory.release_freed_memory() is True
    assert memory.resident_bytes() > 10 << 20  # a Python process with numpy holds more than 10 MB
