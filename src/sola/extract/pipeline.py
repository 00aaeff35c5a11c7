"""Decode several videos at once in background threads, hand their clip batches to one consumer.

PyAV releases the GIL while it decodes and rescales, so threads decode in parallel; the consumer
(the encoder, on the main thread) takes batches in arrival order. The queue is bounded, so memory
stays at about `depth * workers` batches however long the videos are.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Hashable, Iterator, Sequence

from sola.core.errors import ExtractError
from sola.extract.clips import ClipSource

# Event kinds: ("start", ClipSource) once, then ("batch", array)*, then ("done", ClipSource);
# or ("error", one-line message) at any point, after which the key sends nothing more.
START, BATCH, DONE, ERROR = "start", "batch", "done", "error"


def decode_in_background(
    jobs: Sequence[tuple[Hashable, Callable[[], ClipSource]]], workers: int = 2, depth: int = 2
) -> Iterator[tuple[Hashable, str, Any]]:
    """Run each job's `ClipSource` in a pool of `workers` threads; yield `(key, kind, payload)`.

    An `ExtractError` of one video becomes its `error` event and the others go on; any other
    exception is re-raised here. Closing the generator (or an exception in the consumer) stops
    the threads after their current batch.
    """
    if workers < 1:
        raise ExtractError(f"workers must be at least 1, got {workers}")
    events: queue.Queue = queue.Queue(maxsize=max(1, depth * workers))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                events.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce(key: Hashable, make_source: Callable[[], ClipSource]) -> None:
        try:
            source = make_source()
            if not put((key, START, source)):
                return
            for batch in source.batches():
                if not put((key, BATCH, batch)):
                    return
            put((key, DONE, source))
        except ExtractError as exc:
            put((key, ERROR, str(exc)))
        except BaseException as exc:  # a bug, not bad input: let the consumer raise it
            put((key, "crash", exc))

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sola-decode")
    try:
        for key, make_source in jobs:
            pool.submit(produce, key, make_source)
        remaining = len(jobs)
        while remaining:
            key, kind, payload = events.get()
            if kind == "crash":
                raise payload
            if kind in (DONE, ERROR):
                remaining -= 1
            yield key, kind, payload
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
