"""Checks on feature values: the NaN/Inf policy, consistent dims, and a whole-store scan (`inspect`).

Besides NaN/Inf, a value beyond `SQUARE_LIMIT` (about 1.8e19) is a hazard: fitting and transforming compute
in float32, where its square (in every norm) overflows to Inf, and a float64 value beyond float32's range
becomes Inf when cast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sola.core.errors import EmptyVideoError, StoreError

NAN_POLICIES = ("error", "zero", "drop-video")
FLOAT32_MAX = float(np.finfo(np.float32).max)
SQUARE_LIMIT = float(np.sqrt(FLOAT32_MAX))  # ~1.84e19: larger magnitudes overflow float32 when squared


def count_huge(array: np.ndarray) -> tuple[int, float]:
    """Number of finite values beyond +-`SQUARE_LIMIT`, and the largest finite magnitude (0 when none)."""
    if not np.issubdtype(array.dtype, np.floating) or array.dtype.itemsize <= 2 or not array.size:
        return 0, 0.0  # float16 cannot hold such values
    magnitude = np.abs(array)
    finite = np.isfinite(magnitude)
    huge = int(np.count_nonzero(magnitude > SQUARE_LIMIT)) - int(np.count_nonzero(np.isinf(magnitude)))
    largest = float(np.max(magnitude, where=finite, initial=0.0))
    return huge, largest


def huge_values_hint(largest: float) -> str:
    """Why values of magnitude `largest` (> `SQUARE_LIMIT`) are refused, and the fix."""
    cast = " and overflow float32 itself" if largest > FLOAT32_MAX else ""
    return (f"values up to {largest:.3g}, beyond +-{SQUARE_LIMIT:.2g}, whose squares overflow float32{cast} "
            "(sola fits and transforms in float32, so norms become Inf/NaN); rescale the features or remove "
            "those videos")


def dims_message(dims: dict[str, int], where: str) -> str | None:
    """None when every video has one feature dim; else a line naming the odd videos, those not of the most
    common dim ("video X has dim 17 where 11 others have 16"). `dims`: video id -> dim."""
    counts: dict[int, int] = {}
    for dim in dims.values():
        counts[dim] = counts.get(dim, 0) + 1
    if len(counts) <= 1:
        return None
    common = max(counts, key=lambda d: (counts[d], -d))
    odd = [(video_id, dim) for video_id, dim in dims.items() if dim != common]
    named = ", ".join(f"{video_id} ({dim})" for video_id, dim in odd[:5]) + (", ..." if len(odd) > 5 else "")
    if sorted(counts.values())[-2] == counts[common]:  # no majority to hold the others against
        first = {}
        for video_id, dim in dims.items():
            first.setdefault(dim, video_id)
        what = "videos differ in feature dim: " + ", ".join(
            f"{n} of dim {d} ({first[d]}{', ...' if n > 1 else ''})" for d, n in sorted(counts.items()))
    elif len(odd) == 1:
        others = f"{counts[common]} other{'s have' if counts[common] > 1 else ' has'}"
        what = f"video {odd[0][0]!r} has feature dim {odd[0][1]} where {others} {common}"
    else:
        what = f"{len(odd)} videos have another feature dim than the {counts[common]} of dim {common}: {named}"
    return f"{where}: {what}; all videos of a store must come from one extractor (re-extract or remove the odd ones)"


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
    huge_values: int = 0  # finite values beyond +-SQUARE_LIMIT
    largest: float = 0.0  # the largest finite magnitude of the store
    nonfinite_videos: list[str] = field(default_factory=list)
    huge_videos: list[str] = field(default_factory=list)
    video_dims: dict[str, int] = field(default_factory=dict)  # video id -> feature dim
    empty_videos: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # video id -> error message

    def problems(self) -> list[str]:
        """One line per kind of problem found (empty when the store is clean)."""
        found = []
        if not self.videos:
            found.append("the store holds no videos")
        if self.nonfinite_videos:
            found.append(f"{len(self.nonfinite_videos)} videos hold NaN/Inf values{_few(self.nonfinite_videos)}")
        if self.huge_videos:
            found.append(f"{len(self.huge_videos)} videos hold {huge_values_hint(self.largest)}{_few(self.huge_videos)}")
        if self.empty_videos:
            found.append(f"{len(self.empty_videos)} empty videos{_few(self.empty_videos)}")
        if self.unreadable:
            first = next(iter(self.unreadable.values()))
            found.append(f"{len(self.unreadable)} unreadable videos{_few(list(self.unreadable))}; first: {first}")
        mixed = dims_message(self.video_dims, self.path)
        if mixed:
            found.append(mixed)
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
        summary.video_dims[video_id] = dim
        summary.dtypes[str(features.dtype)] = summary.dtypes.get(str(features.dtype), 0) + 1
        nans, infs = count_nonfinite(features)
        summary.nan_values += nans
        summary.inf_values += infs
        if nans or infs:
            summary.nonfinite_videos.append(video_id)
        huge, largest = count_huge(features)
        summary.huge_values += huge
        summary.largest = max(summary.largest, largest)
        if huge:
            summary.huge_videos.append(video_id)
    return summary
