"""Seconds <-> snippet index: `SnippetGrid` (where snippets sit in time) and `grid_for` (a video's grid).

A fixed stride (ActionFormer: snippet i is centred at `(i * feat_stride + num_frames / 2) / fps`
seconds) or features rescaled to T snippets spread evenly over the duration (ActivityNet's 100
snippets: snippet i is centred at `(i + 0.5) * D / T`); both are affine (an offset and a step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sola.core.errors import AnnotationError
from sola.data.annotations.model import VideoAnnotation


@dataclass(frozen=True)
class SnippetGrid:
    """Where snippets sit in time. Build with `SnippetGrid.fixed(...)` or `SnippetGrid.rescaled(...)`.

    Fixed stride: snippet i is centred at `(i * feat_stride + num_frames / 2) / fps` seconds.
    Rescaled: T snippets split the duration D evenly; snippet i is centred at `(i + 0.5) * D / T`.
    Both are affine, so a grid is a start time `offset` and a `step`, both in seconds.
    """

    offset: float  # centre of snippet 0, seconds
    step: float  # seconds between consecutive snippet centres

    @classmethod
    def fixed(cls, fps: float, feat_stride: float, num_frames: float | None = None) -> "SnippetGrid":
        """Grid of snippets every `feat_stride` frames, each `num_frames` wide (default = stride)."""
        if not fps or fps <= 0 or not feat_stride or feat_stride <= 0:
            raise AnnotationError(f"a fixed snippet grid needs fps > 0 and feat_stride > 0 (got {fps}, {feat_stride})")
        num_frames = feat_stride if num_frames is None else num_frames
        return cls(offset=num_frames / 2 / fps, step=feat_stride / fps)

    @classmethod
    def rescaled(cls, duration: float, num_snippets: int) -> "SnippetGrid":
        """Grid of `num_snippets` snippets spread evenly over `duration` seconds."""
        if not math.isfinite(duration) or duration <= 0 or num_snippets <= 0:
            raise AnnotationError(
                f"a rescaled snippet grid needs a known duration > 0 and T > 0 (got {duration}, {num_snippets})"
            )
        step = duration / num_snippets
        return cls(offset=step / 2, step=step)

    def centers(self, num_snippets: int) -> np.ndarray:
        """Centre times of snippets 0..T-1, shape (T,), seconds."""
        return self.offset + self.step * np.arange(num_snippets, dtype=np.float64)

    def to_index(self, seconds) -> np.ndarray:
        """Fractional snippet index of each time (seconds -> index units); shape kept."""
        return (np.asarray(seconds, dtype=np.float64) - self.offset) / self.step

    def to_seconds(self, index) -> np.ndarray:
        """Centre time of each (fractional) snippet index (index -> seconds); shape kept."""
        return self.offset + self.step * np.asarray(index, dtype=np.float64)


def grid_for(
    video: VideoAnnotation,
    num_snippets: int,
    feat_stride: float | None = None,
    num_frames: float | None = None,
    fps: float | None = None,
    fallback_stride: float | None = None,
    fallback_frames: float | None = None,
) -> SnippetGrid:
    """The snippet grid of a video with T snippets.

    A fixed stride when `feat_stride` is given here or in the annotation (fps from the argument or
    the annotation), or else `fallback_stride` (snippets `fallback_frames` wide) when an fps is
    known; otherwise T snippets rescaled over the annotated duration. Raises `AnnotationError`
    when the needed fps or duration is unknown.
    """
    stride = feat_stride if feat_stride is not None else video.feat_stride
    rate = fps if fps is not None else video.fps
    frames = num_frames if num_frames is not None else video.num_frames
    if stride is None and rate and fallback_stride:
        stride, frames = fallback_stride, fallback_frames
    if stride is not None:
        if rate is None:
            raise AnnotationError(f"video {video.video_id!r}: fps unknown; pass fps for the fixed-stride grid")
        return SnippetGrid.fixed(rate, stride, frames)
    if not math.isfinite(video.duration):
        raise AnnotationError(
            f"video {video.video_id!r}: duration unknown; pass feat_stride and fps, or metadata with durations"
        )
    return SnippetGrid.rescaled(video.duration, num_snippets)
