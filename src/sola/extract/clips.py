"""Snippet geometry: a frame stream cut into clips of `window` frames every `stride` frames.

Snippet i covers resampled frames `[i * stride, i * stride + window)`, so its centre is at
`(i * stride + window / 2) / fps` seconds. The number of snippets is
`ceil(max(N - window, 0) / stride) + 1` for N frames (see `num_snippets`): the last window is the
first one that reaches the end, padded by repeating the last frame.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from sola.core.errors import ExtractError
from sola.extract.video import DecodeStats, read_frames, read_header


def num_snippets(frames: int, window: int, stride: int) -> int:
    """Snippets for `frames` frames: `ceil(max(frames - window, 0) / stride) + 1` (0 if no frames).

    With `stride > window` clips leave gaps, and a tail inside a gap starts no clip: then it is
    `ceil(frames / stride)` when that is smaller.
    """
    if frames <= 0:
        return 0
    return min(-(-max(frames - window, 0) // stride) + 1, -(-frames // stride))


def iter_clips(frames: Iterable[np.ndarray], window: int, stride: int) -> Iterator[np.ndarray]:
    """Group a frame stream into clips `(window, H, W, 3)` starting every `stride` frames.

    Holds at most `window` frames. The last clip repeats the final frame to fill the window when
    the stream ends inside it, so (for `stride <= window`) every frame lands in a clip.
    """
    if window < 1 or stride < 1:
        raise ExtractError(f"window and stride must be at least 1, got window={window}, stride={stride}")
    buffer: list[np.ndarray] = []  # frames from the current clip start on
    skip = 0  # frames still to drop before the next clip start (stride > window)
    total = 0
    emitted_until = 0  # frames covered by clips emitted so far
    for frame in frames:
        total += 1
        if skip:
            skip -= 1
            continue
        buffer.append(frame)
        if len(buffer) == window:
            yield np.stack(buffer)
            emitted_until = total
            if stride >= window:
                buffer.clear()
                skip = stride - window
            else:
                del buffer[:stride]
    # Tail: one clip padded with the last frame when frames after the last full clip remain
    # (with stride > window an empty buffer means the tail fell in a gap between clips).
    if emitted_until < total and buffer:
        buffer.extend([buffer[-1]] * (window - len(buffer)))
        yield np.stack(buffer)


def batched(clips: Iterable[np.ndarray], batch: int) -> Iterator[np.ndarray]:
    """Stack consecutive clips into batches `(B, window, H, W, 3)` of at most `batch` clips."""
    group: list[np.ndarray] = []
    for clip in clips:
        group.append(clip)
        if len(group) == batch:
            yield np.stack(group)
            group = []
    if group:
        yield np.stack(group)


class ClipSource:
    """One video as batches of uint8 clips, plus the counts that `extract` records about it.

    Construction reads the header (raises `ExtractError` for a missing or unreadable file);
    `batches()` decodes; `info(snippets)` afterwards describes what was decoded.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: float | None = None,
        window: int = 16,
        stride: int = 16,
        batch: int = 8,
        start: float = 0.0,
        max_seconds: float | None = None,
    ) -> None:
        if window < 1 or stride < 1 or batch < 1:
            raise ExtractError(f"window, stride and batch must be at least 1 (got {window}, {stride}, {batch})")
        self.path = Path(path)
        self.fps, self.window, self.stride, self.batch = fps, window, stride, batch
        self.start, self.max_seconds = start, max_seconds
        self.header = read_header(self.path)
        self.frame_rate = float(fps if fps is not None else self.header.fps)
        if not self.frame_rate:
            raise ExtractError(f"{self.path}: the container does not state a frame rate; pass --fps")
        self.stats = DecodeStats()
        seconds = max(self.header.duration - start, 0.0)
        if max_seconds is not None:
            seconds = min(seconds, max_seconds)
        self.expected = num_snippets(round(seconds * self.frame_rate), window, stride)  # for progress bars

    def batches(self) -> Iterator[np.ndarray]:
        """Decode and yield `(B, window, 224, 224, 3)` uint8 batches; raises `ExtractError`."""
        frames: Iterable[np.ndarray] = read_frames(self.path, fps=self.fps, stats=self.stats, start=self.start)
        if self.max_seconds is not None:
            limit = max(1, round(self.max_seconds * self.frame_rate))
            frames = (frame for _, frame in zip(range(limit), frames))
        yield from batched(iter_clips(frames, self.window, self.stride), self.batch)

    def info(self, snippets: int) -> dict:
        """What was decoded: fps (of the resampled frames), window and stride (frames), num_frames,
        num_snippets, duration and header_duration (seconds), source_fps, source_frames."""
        return {
            "fps": self.frame_rate,
            "window": self.window,
            "stride": self.stride,
            "num_frames": self.stats.frames,
            "num_snippets": int(snippets),
            "duration": round(self.stats.duration, 6),
            "source_fps": self.header.fps,
            "source_frames": self.stats.source_frames,
            "header_duration": round(self.header.duration, 6),
        }
