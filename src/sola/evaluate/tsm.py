"""TSM pictures of one video of a store: the data side of `sola tsm` (drawing is `sola.viz.plots.tsm_figure`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sola.adapt.adapter import SoLaAdapter, load_adapter, resolve_adapter_path
from sola.adapt.matching import target_map
from sola.adapt.transform import apply_adapter
from sola.core.config import MatchingConfig, load_config
from sola.core.errors import StoreError
from sola.core.runs import CONFIG, run_of
from sola.data.annotations import grid_for, load_annotations, match_ids
from sola.viz.plots import cosine_similarity_map, tsm_figure


def find_video(store, video_id: str) -> str:
    """The store's id for `video_id` (also matching `v_<id>` <-> `<id>`); raises `StoreError` listing a few ids."""
    ids = store.video_ids()
    if video_id in ids:
        return video_id
    pairs = match_ids(ids, [video_id]).pairs
    if pairs:
        return next(iter(pairs))
    shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
    raise StoreError(f"{store.path}: no video {video_id!r} in this store ({len(ids)} videos: {shown}); check --video")


def segments_in_snippets(video, num_snippets: int, feat_stride=None, num_frames=None, fps=None) -> list[tuple[float, float]]:
    """Ground-truth `(start, end)` of a `VideoAnnotation` on a snippet axis where snippet i spans [i, i+1).

    Uses the annotation's snippet grid (`sola.data.annotations.grid_for`); ambiguous segments are left out.
    """
    grid = grid_for(video, num_snippets, feat_stride, num_frames, fps)
    spans = []
    for seg in video.segments:
        if seg.ambiguous:
            continue
        start, end = np.clip(grid.to_index([seg.start, seg.end]) + 0.5, 0, num_snippets)
        if end > start:
            spans.append((float(start), float(end)))
    return spans


def write_tsm_picture(
    store,
    video_id: str,
    out: str | os.PathLike,
    adapter=None,
    annotations=None,
    annotation_format: str | None = None,
    metadata: str | os.PathLike | None = None,
    feat_stride: float | None = None,
    num_frames: float | None = None,
    fps: float | None = None,
    labels: dict[str, str] | None = None,
    more: dict | None = None,
) -> Path:
    """Write the PNG of one video's cosine TSM (and its SoLa TSM with `adapter`) to `out`.

    `adapter`: a `SoLaAdapter`, an adapter file or a run directory (whose config gives the target
    kernel; else the reference N=8, K=16). `annotations`: an `Annotations` or a file (draws the
    ground truth). `more`: panel title -> `SoLaAdapter`, more panels after those (e.g. the adapter as fitted beside
    the selected one); `labels`: other titles for "original features" and "SoLa features". Raises `StoreError`,
    `CheckpointError` or `AnnotationError` naming the fix.
    """
    stored_id = find_video(store, video_id)
    features = store.read(stored_id)  # (T, C)
    maps = {"original features": cosine_similarity_map(features)}
    matching = MatchingConfig()
    if adapter is not None:
        if not isinstance(adapter, SoLaAdapter):
            adapter_file = resolve_adapter_path(adapter)
            run_dir = run_of(adapter_file)
            if run_dir is not None:
                matching = load_config(run_dir / CONFIG).matching
            adapter = load_adapter(adapter_file)
        maps["SoLa features"] = _adapted_map(store, adapter, features)
    for title, extra in (more or {}).items():
        maps[title] = _adapted_map(store, extra, features)
    maps = {(labels or {}).get(title, title): tsm for title, tsm in maps.items()}
    segments: list[tuple[float, float]] = []
    if annotations is not None:
        if not hasattr(annotations, "subset"):
            annotations = load_annotations(annotations, annotation_format, metadata)
        video = annotations.get(video_id) or annotations.get(stored_id)
        if video is not None:
            segments = segments_in_snippets(video, len(features), feat_stride, num_frames, fps)
    target = target_map(matching.num_positions, matching.target_k).numpy()
    return tsm_figure(maps, out, segments, target, title=f"{video_id} ({len(features)} snippets)")


def _adapted_map(store, adapter: SoLaAdapter, features: np.ndarray) -> np.ndarray:
    """The cosine TSM of `features` after `adapter`; `StoreError` when their dimensions differ."""
    if adapter.dim != features.shape[1]:
        raise StoreError(
            f"{store.path}: features of dim {features.shape[1]} do not fit an adapter of dim {adapter.dim}; "
            "use the adapter fitted on this feature type"
        )
    return cosine_similarity_map(apply_adapter(adapter, features))
