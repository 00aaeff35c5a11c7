"""Checks on feature values: the NaN/Inf policy, consistent dims, and a whole-store scan (`inspect`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sola.core.errors import EmptyVideoError, StoreError

NAN_POLICIES = ("error", "zero", "drop-video")


def count_nonfinite(array: np.ndarray) -> tuple[int, int]:
    """Number of NaN and of +-Inf values in an array."""
    if not np.issubdtype(array.dtype, np.floating):
        return 0, 0
    return int(np.isnan(array).sum()), int(np.isinf(array).sum())


def apply_nan_policy(array: np.ndarray, policy: str, where: str) -> np.ndarray | None:
    """Apply the NaN/Inf policy to one video's `(T, C)` features.

    "error": raise `StoreError` naming `where` (a file or video) if any value is NaN/Inf;
    "zero": return a copy with NaN/Inf replaced by 0 (the input array is not modified);
    "drop-video": return None when the video has any NaN/Inf (the caller skips it).
    Finite arrays are returned unchanged (same object) under every policy.
    """
    if policy not in NAN_POLICIES:
        raise StoreError(f"unknown NaN policy {policy!r}; use one of {', '.join(NAN_POLICIES)}")
    if not np.issubdtype(array.dtype, np.floating) or np.isfinite(array).all():
        return array
    if policy == "zero":
        return np.nan_to_num(array, copy=True, nan=0.0, posinf=0.0, neginf=0.0)
    if policy == "drop-video":
        return None
    nans, infs = count_nonfinite(array)
    raise StoreError(
        f"{where}: {nans} NaN and {infs} Inf values; fix the features, or choose "
        "--nan-policy zero (replace them by 0) or --nan-policy drop-video (skip such videos)"
    )


@dataclass
class StoreSummary:
    """What `sola inspect` reports about a store; counts are over all videos scanned."""

    path: str
    layout: str
    options: dict[str, Any]
    videos: int = 0
    lengths: list[int] = field(default_factory=list)
    dims: dict[int, int] = field(default_factory=dict)  # feature dim -> number of videos
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype name -> number of videos
    nan_values: int = 0
    inf_values: int = 0
    nonfinite_videos: list[str] = field(default_factory=list)
    empty_videos: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # video id -> error message

    def problems(self) -> list[str]:
        """One line per kind of problem found (empty when the store is clean)."""
        found = []
        if self.nonfinite_videos:
            found.append(f"{len(self.nonfinite_videos)} videos hold NaN/Inf values{_few(self.nonfinite_videos)}")
        if self.empty_videos:
            found.append(f"{len(self.empty_videos)} empty videos{_few(self.empty_videos)}")
        if self.unreadable:
            first = next(iter(self.unreadable.values()))
            found.append(f"{len(self.unreadable)} unreadable videos{_few(list(self.unreadable))}; first: {first}")
        if len(self.dims) > 1:
            found.append(f"feature dims differ across videos: {dict(sorted(self.dims.items()))}")
        return found


def _few(names: list[str], limit: int = 5) -> str:
    return f" ({', '.join(names[:limit])}{', ...' if len(names) > limit else ''})"


def scan_store(store, progress: bool = True) -> StoreSummary:
    """Read every video once (one at a time) and count lengths, dims, dtypes, NaN/Inf, empties.

    Per-video read errors are collected in `unreadable` instead of raised; memory stays bounded by
    the largest video.
    """
    from tqdm.auto import tqdm

    summary = StoreSummary(str(store.path), store.layout, store.options())
    ids = store.video_ids()
    summary.videos = len(ids)
    for video_id in tqdm(ids, desc="inspect", unit="video", disable=None if progress else True):
        try:
            features = store.read(video_id)
        except EmptyVideoError:
            summary.empty_videos.append(video_id)
            continue
        except StoreError as exc:
            summary.unreadable[video_id] = str(exc)
            continue
        summary.lengths.append(int(features.shape[0]))
        dim = int(features.shape[1])
        summary.dims[dim] = summary.dims.get(dim, 0) + 1
        summary.dtypes[str(features.dtype)] = summary.dtypes.get(str(features.dtype), 0) + 1
        nans, infs = count_nonfinite(features)
        summary.nan_values += nans
        summary.inf_values += infs
        if nans or infs:
            summary.nonfinite_videos.append(video_id)
    return summary
