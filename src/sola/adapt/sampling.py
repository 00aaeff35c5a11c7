"""Training windows: which videos, where they start, and reading them without reloading files."""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
from tqdm.auto import tqdm

from sola.core.atomic import atomic_path
from sola.core.errors import StoreError
from sola.data.stores import FeatureStore
from sola.data.stores.checks import count_huge, dims_message
from sola.data.stores.npy import NpyRows


@dataclass
class WindowSource:
    """The videos that can give training windows, each as a sliceable `(T, C)` source."""

    video_ids: list[str]
    lengths: np.ndarray  # (V,) snippets per usable video
    sources: list[Any]  # sliceable (T, C) sources (NpyRows, HDF5 datasets, arrays) indexed like video_ids
    dim: int
    skipped: list[str] = field(default_factory=list)  # shorter than the window
    dropped: list[str] = field(default_factory=list)  # NaN/Inf under nan_policy="drop-video"
    nan_policy: str = "error"

    def batch(self, videos: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
        """Stack windows `(B, L, C)` float32 for `videos[b]` starting at `starts[b]`."""
        out = np.empty((len(videos), window, self.dim), dtype=np.float32)
        for row, (video, start) in enumerate(zip(videos.tolist(), starts.tolist())):
            out[row] = self.sources[video][start : start + window]
        if self.nan_policy == "zero":
            np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        elif not np.isfinite(out).all():
            bad = sorted({self.video_ids[v] for v, ok in zip(videos, np.isfinite(out).all(axis=(1, 2))) if not ok})
            raise StoreError(
                f"non-finite values (NaN/Inf) in the features of video(s) {', '.join(bad[:5])}; "
                "clean them (see `sola inspect`) before fitting"
            )
        return out


def open_window_source(
    store: FeatureStore, window: int, nan_policy: str = "error", cache_dir: str | os.PathLike | None = None
) -> WindowSource:
    """Open every video of `store` for window sampling; videos shorter than `window` are skipped.

    Layouts without random access (csv, pickle, npz, pt, two-stream) are read once and cached as
    float32 `.npy` files in `cache_dir`, then read row by row like the npy layout, so training never
    holds the dataset in memory nor rereads a file per window (without `cache_dir` they are held in
    memory). `nan_policy`: "error" scans every video once up front (a few snippets at a time) and
    fails naming the first with NaN/Inf, "zero" replaces them by 0 in the batches, "drop-video" scans
    the same way and leaves out the videos with NaN/Inf.
    Raises `StoreError` when the store is empty, dims differ, a video holds NaN/Inf under "error" or
    no video is long enough.
    """
    ids, lengths, sources, skipped, dropped = [], [], [], [], []
    dims: dict[str, int] = {}  # video id -> feature dim, to name the odd ones
    cache = None if store.random_access or cache_dir is None else Path(cache_dir)
    for video_id in tqdm(store.video_ids(), desc="caching windows", unit="video",
                         disable=True if cache is None else None, leave=False):
        source = store.window_source(video_id) if cache is None else _cached(store, video_id, cache)
        length, dims[video_id] = source.shape
        if length < window:
            skipped.append(video_id)
            continue
        if nan_policy != "zero" and not all_finite(source):
            if nan_policy == "drop-video":
                dropped.append(video_id)
                continue
            raise StoreError(
                f"video {video_id!r} in {store.path} holds NaN/Inf values; fix the features (`sola inspect` "
                "counts them), or choose --nan-policy zero (replace them by 0) or drop-video (leave such videos out)"
            )
        ids.append(video_id)
        lengths.append(length)
        sources.append(source)
    if not dims:
        raise StoreError(f"feature store {store.path} holds no videos")
    mixed = dims_message(dims, str(store.path))
    if mixed:
        raise StoreError(mixed)
    if not ids:
        raise StoreError(_nothing_left(store, window, skipped, dropped))
    dim = next(iter(dims.values()))
    return WindowSource(ids, np.asarray(lengths, dtype=np.int64), sources, dim, skipped, dropped, nan_policy)


def _few(names: list[str], limit: int = 5) -> str:
    """The first `limit` names, comma-separated ("..." when there are more)."""
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def _nothing_left(store: FeatureStore, window: int, skipped: list[str], dropped: list[str]) -> str:
    """Why no video is left to fit on: all dropped for NaN/Inf, all too short, or some of each."""
    if dropped and not skipped:
        return (f"every video of {store.path} holds NaN/Inf values ({len(dropped)}: {_few(dropped)}), so "
                "--nan-policy drop-video leaves nothing to fit on; fix the features (`sola inspect` counts them) "
                "or choose --nan-policy zero (replace them by 0)")
    shorter = (f"no video in {store.path} has at least {window} snippets (the training window)" if not dropped else
               f"no video of {store.path} is left to fit on: {len(dropped)} hold NaN/Inf values ({_few(dropped)}) "
               f"and {len(skipped)} are shorter than {window} snippets, the training window ({_few(skipped)})")
    return f"{shorter}; lower matching.window (and start/step/num_positions) in the config"


def all_finite(source: Any, values: int = 1 << 22) -> bool:
    """True when every value of a `(T, C)` source is finite; row sources and HDF5 datasets are read a
    block of about `values` values at a time, never whole."""
    rows = max(1, values // max(1, source.shape[1]))
    return all(np.isfinite(source[first : first + rows]).all() for first in range(0, source.shape[0], rows))


def largest_magnitude(source: Any, values: int = 1 << 22) -> float:
    """The largest finite magnitude in a `(T, C)` source, read a block of about `values` values at a time."""
    rows = max(1, values // max(1, source.shape[1]))
    return max((count_huge(np.asarray(source[first : first + rows]))[1] for first in range(0, source.shape[0], rows)),
               default=0.0)


def _cached(store: FeatureStore, video_id: str, cache: Path) -> np.ndarray:
    """One video as float32 rows (`NpyRows`) in the window cache (written once, atomically).

    Files are named by a hash of the id: any id is a valid name, and a resumed run finds its videos.
    """
    file = cache / f"{hashlib.sha256(video_id.encode()).hexdigest()[:24]}.npy"
    if not file.is_file():
        with atomic_path(file) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(store.read(video_id), dtype=np.float32), allow_pickle=False)
    return NpyRows.open(file)


class CachedStore:
    """A store without random access seen through the window cache: `window_source` reads rows of the
    video's float32 copy in `cache_dir` (written on first use), so slices never reread the original."""

    def __init__(self, store: FeatureStore, cache_dir: str | os.PathLike) -> None:
        self.store, self.cache_dir = store, Path(cache_dir)

    def window_source(self, video_id: str) -> np.ndarray:
        """The video as float32 rows `(T, C)` (`NpyRows`)."""
        return _cached(self.store, video_id, self.cache_dir)


def epoch_plan(
    lengths: np.ndarray,
    window: int,
    windows_per_video: int,
    seed: int,
    epoch: int,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """This rank's windows for one epoch: `(video_index, start)` arrays, shuffled.

    Deterministic in (seed, epoch): every rank computes the same permutation of videos and takes a
    disjoint shard of it; shards are padded (by wrapping) to equal size so DDP ranks take equal steps.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    per_rank = -(-len(order) // world_size)
    if per_rank * world_size > len(order):
        order = np.resize(order, per_rank * world_size)  # repeats from the start, like DistributedSampler
    videos = np.repeat(order[rank::world_size], windows_per_video)
    local = np.random.default_rng([seed, epoch, rank])
    videos = videos[local.permutation(len(videos))]
    starts = local.integers(0, lengths[videos] - window + 1)
    return videos, starts


def prefetch(produce: Callable[[int], Any], count: int, depth: int = 2) -> Iterator[Any]:
    """`produce(0), ..., produce(count - 1)`, computed up to `depth` ahead in a background thread.

    Reading windows (pread, HDF5) releases the GIL, so the next batches are read while the current
    step runs. An error in `produce` is raised here; stopping early (a closed generator) stops the
    thread. `depth` 0 produces in the caller, one at a time.
    """
    if depth <= 0:
        for index in range(count):
            yield produce(index)
        return
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        for index in range(count):
            if stop.is_set():
                return
            try:
                item = (True, produce(index))
            except BaseException as exc:  # handed to the consumer
                item = (False, exc)
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if not item[0]:
                return

    thread = threading.Thread(target=work, name="sola-prefetch", daemon=True)
    thread.start()
    try:
        for _ in range(count):
            ok, item = ready.get()
            if not ok:
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
