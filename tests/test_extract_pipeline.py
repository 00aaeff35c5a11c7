"""Background decoding: events per video in order, errors isolated, threads stopped on close."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest

from sola.core.errors import ExtractError
from sola.extract.pipeline import BATCH, DONE, ERROR, START, decode_in_background


class FakeSource:
    """Stands in for a `ClipSource`: yields `count` batches, optionally failing after `fail_after`."""

    def __init__(self, count, fail_after=None, error=ExtractError):
        self.count, self.fail_after, self.error = count, fail_after, error

    def batches(self):
        for i in itertools.count() if self.count is None else range(self.count):
            if self.fail_after is not None and i == self.fail_after:
                raise self.error(f"broken after {i} batches")
            time.sleep(0.001)
            yield np.full((1,), i)


def test_each_video_gets_start_batches_then_done_or_one_error():
    def unreadable():
        raise ExtractError("bad.mp4: cannot open as a video")

    jobs = [("a", lambda: FakeSource(5)), ("bad", unreadable), ("b", lambda: FakeSource(3, fail_after=2)),
            ("c", lambda: FakeSource(0))]  # fmt: skip
    per_key: dict[str, list] = {}
    for key, kind, payload in decode_in_background(jobs, workers=3):
        per_key.setdefault(key, []).append((kind, int(payload[0]) if kind == BATCH else payload))
    assert [k for k, _ in per_key["a"]] == [START] + [BATCH] * 5 + [DONE]
    assert [v for k, v in per_key["a"] if k == BATCH] == [0, 1, 2, 3, 4]  # in order within a video
    assert per_key["bad"] == [(ERROR, "bad.mp4: cannot open as a video")]
    assert [k for k, _ in per_key["b"]] == [START, BATCH, BATCH, ERROR] and per_key["b"][-1][1] == "broken after 2 batches"
    assert [k for k, _ in per_key["c"]] == [START, DONE]


def test_a_bug_in_a_decoder_thread_is_raised_to_the_consumer():
    with pytest.raises(ZeroDivisionError):
        for _ in decode_in_background([("x", lambda: FakeSource(5, fail_after=1, error=ZeroDivisionError))]):
            pass


def test_closing_early_stops_endless_decoders():
    before = threading.active_count()
    events = decode_in_background([(i, lambda: FakeSource(None)) for i in range(3)], workers=3, depth=1)
    for _ in itertools.islice(events, 10):
        pass
    started = time.perf_counter()
    events.close()
    assert time.perf_counter() - started < 5
    assert threading.active_count() == before


def test_workers_must_be_positive():
    with pytest.raises(ExtractError, match="workers must be at least 1"):
        next(decode_in_background([], workers=0))
