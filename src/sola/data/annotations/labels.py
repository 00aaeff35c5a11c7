"""Snippet labels: per-snippet action/background, class index and ambiguity of one video (`snippet_labels`).

Each of T snippets takes the label of the segment containing its centre time on the video's
`SnippetGrid`; where segments overlap the shortest wins, and `Ambiguous` segments only mark snippets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sola.core.errors import AnnotationError
from sola.data.annotations.grid import SnippetGrid, grid_for
from sola.data.annotations.model import VideoAnnotation


@dataclass
class SnippetLabels:
    """Per-snippet targets of one video: all arrays have shape (T,)."""

    action: np.ndarray  # bool: the snippet centre lies inside a (non-ambiguous) segment
    label: np.ndarray  # int64 class index, -1 for background (and ambiguous-only snippets)
    ambiguous: np.ndarray  # bool: the centre lies inside a segment labelled Ambiguous


def snippet_labels(
    video: VideoAnnotation,
    num_snippets: int,
    grid: SnippetGrid | None = None,
    label_index: Mapping[str, int] | None = None,
) -> SnippetLabels:
    """Action/background and class of each of T snippets (by its centre time).

    `grid` defaults to `grid_for(video, num_snippets)`; `label_index` maps class names to indices
    (default: each segment's `label_id`). Where segments overlap the shortest one wins.
    Returns `SnippetLabels` with (T,) arrays; raises `AnnotationError` if a label has no index.
    """
    grid = grid if grid is not None else grid_for(video, num_snippets)
    centers = grid.centers(num_snippets)  # (T,)
    action = np.zeros(num_snippets, dtype=bool)
    label = np.full(num_snippets, -1, dtype=np.int64)
    ambiguous = np.zeros(num_snippets, dtype=bool)
    real = [s for s in video.segments if not s.ambiguous]
    for seg in video.segments:
        if seg.ambiguous:
            ambiguous |= (centers >= seg.start) & (centers <= seg.end)
    if real:
        starts = np.array([s.start for s in real])  # (S,)
        ends = np.array([s.end for s in real])
        ids = np.empty(len(real), dtype=np.int64)
        for k, seg in enumerate(real):
            value = label_index.get(seg.label) if label_index is not None else seg.label_id
            if value is None:
                raise AnnotationError(f"video {video.video_id!r}: label {seg.label!r} has no class index")
            ids[k] = value
        inside = (centers[None, :] >= starts[:, None]) & (centers[None, :] <= ends[:, None])  # (S, T)
        lengths = np.where(inside, (ends - starts)[:, None], np.inf)  # (S, T)
        winner = lengths.argmin(axis=0)  # (T,)
        action = inside.any(axis=0)
        label = np.where(action, ids[winner], -1)
    return SnippetLabels(action=action, label=label, ambiguous=ambiguous)
