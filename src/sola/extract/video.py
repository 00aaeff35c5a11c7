"""Video decoding with PyAV: open with clear errors, resample to a frame rate, resize and centre-crop.

Preprocessing (the DeepMind Kinetics evaluation): each frame is resized so that its short side is
256 pixels (bilinear, aspect kept), then the central 224 x 224 is cropped. Frames come out as RGB
uint8 `(224, 224, 3)`; scaling to [-1, 1] happens on the encoder's device.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from sola.core.errors import ExtractError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv"}
SHORT_SIDE = 256
CROP = 224
REENCODE_HINT = "re-download it or re-encode it (ffmpeg -i IN -c:v libx264 OUT.mp4)"


@dataclass
class VideoInfo:
    """What the container says about the first video stream (before any resampling)."""

    path: Path
    fps: float  # average frame rate of the stream
    frames: int  # frame count from the header; 0 if the container does not say
    duration: float  # seconds; 0.0 if unknown
    width: int
    height: int


def _open(path: Path):
    """Open a container with PyAV and return `(container, first video stream)`; raise `ExtractError`."""
    import av

    if not path.exists():
        raise ExtractError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise ExtractError(f"{path}: not a file; pass video files or a directory of videos")
    try:
        container = av.open(str(path))
    except PermissionError:
        raise ExtractError(f"{path}: permission denied; make the file readable (chmod +r)") from None
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ExtractError(f"{path}: cannot open as a video ({_reason(exc)}); {REENCODE_HINT}") from None
    if not container.streams.video:
        container.close()
        raise ExtractError(f"{path}: has no video stream (audio only?); pass a file with video")
    stream = container.streams.video[0]
    if stream.codec_context is None or not stream.codec_context.width:
        container.close()
        raise ExtractError(f"{path}: the video stream cannot be decoded (unknown codec or size); {REENCODE_HINT}")
    return container, stream


def _reason(exc: Exception) -> str:
    """A short cause: FFmpeg's message without its errno and file name, else the exception text."""
    text = (getattr(exc, "strerror", None) or str(exc)).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _stream_fps(stream) -> float:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def read_header(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header: fps, frame count, duration, size; raises `ExtractError` if unreadable."""
    path = Path(path)
    container, stream = _open(path)
    try:
        duration = 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        return VideoInfo(
            path, _stream_fps(stream), int(stream.frames or 0), duration,
            stream.codec_context.width, stream.codec_context.height,
        )  # fmt: skip
    finally:
        container.close()


def resized_size(width: int, height: int, short_side: int = SHORT_SIDE) -> tuple[int, int]:
    """`(width, height)` after scaling the short side to `short_side` pixels, aspect kept."""
    scale = short_side / min(width, height)
    return max(short_side, round(width * scale)), max(short_side, round(height * scale))


def centre_crop(frame: np.ndarray, size: int = CROP) -> np.ndarray:
    """The central `size x size` of an `(H, W, 3)` frame."""
    height, width = frame.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return frame[top : top + size, left : left + size]


@dataclass
class DecodeStats:
    """Filled in while frames are read: how many came in, how many went out, the span in seconds."""

    source_frames: int = 0
    frames: int = 0
    duration: float = 0.0  # seconds from the first frame to the end of the last one


def read_frames(
    path: str | os.PathLike,
    fps: float | None = None,
    short_side: int = SHORT_SIDE,
    crop: int = CROP,
    stats: DecodeStats | None = None,
    start: float = 0.0,
) -> Iterator[np.ndarray]:
    """Yield RGB uint8 frames `(crop, crop, 3)`, resampled to `fps` frames per second if given.

    Resampling picks, for each output time `start + k / fps` (seconds from the first frame) before
    the end of the last frame, the source frame nearest in time, so N seconds give
    `ceil(N * fps)` frames; only picked frames are converted. `fps=None` keeps every frame
    from `start` on. `stats` (optional) is updated as frames are read. Raises `ExtractError` if
    the file is missing, not a video, or cannot be decoded (also mid-stream, naming the frame).
    """
    import av

    path = Path(path)
    if fps is not None and not fps > 0:
        raise ExtractError(f"fps must be positive, got {fps}")
    if start < 0:
        raise ExtractError(f"start must be at least 0 seconds, got {start}")
    stats = stats if stats is not None else DecodeStats()
    container, stream = _open(path)
    stream.thread_type = "AUTO"
    width, height = _output_size(stream, short_side, crop)
    convert = partial(_to_rgb, width=width, height=height, crop=crop)
    frame_span = 1.0 / (_stream_fps(stream) or 25.0)
    try:
        timed = _timed_frames(container.decode(stream), frame_span, start, stats)
        if fps is None:
            yield from _frames_from_start(timed, convert, stats)
        else:
            yield from _resample(_shown_until(timed, frame_span), fps, convert, stats)
    except av.FFmpegError as exc:
        raise ExtractError(
            f"{path}: decoding failed after {stats.source_frames} frames ({_reason(exc)}); the file is "
            f"corrupt or truncated: {REENCODE_HINT}"
        ) from None
    finally:
        container.close()
    if stats.source_frames == 0:
        raise ExtractError(f"{path}: no frame could be decoded; {REENCODE_HINT}")
    if stats.frames == 0:
        raise ExtractError(f"{path}: no frame at or after {start:g} s (the video lasts {stats.duration:.2f} s)")


def _output_size(stream, short_side: int, crop: int) -> tuple[int, int]:
    """`(width, height)` of a stream's frames resized for the crop; raises `ExtractError` if the crop does not fit."""
    width, height = resized_size(stream.codec_context.width, stream.codec_context.height, short_side)
    if min(width, height) < crop:
        raise ExtractError(f"short side {short_side} is smaller than the crop {crop}")
    return width, height


def _to_rgb(frame, width: int, height: int, crop: int) -> np.ndarray:
    """A decoded frame resized to `(width, height)` (bilinear) and centre-cropped: `(crop, crop, 3)` uint8."""
    rgb = frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="BILINEAR")
    return np.ascontiguousarray(centre_crop(rgb, crop))


def _timed_frames(frames: Iterable, frame_span: float, start: float, stats: DecodeStats) -> Iterator[tuple]:
    """Yield `(frame, seconds after start)`, timed from the first frame; counts them into `stats`."""
    origin = None
    for frame in frames:
        time = frame.time if frame.time is not None else stats.source_frames * frame_span
        origin = time if origin is None else origin
        time -= origin
        stats.source_frames += 1
        stats.duration = time + frame_span
        yield frame, time - start  # output times are measured from `start`


def _frames_from_start(timed: Iterable[tuple], convert: Callable, stats: DecodeStats) -> Iterator[np.ndarray]:
    """Convert and yield every frame at or after `start` (time 0), counting them into `stats`."""
    for frame, time in timed:
        if time < -1e-6:
            continue
        stats.frames += 1
        yield convert(frame)


def _shown_until(timed: Iterable[tuple], frame_span: float) -> Iterator[tuple]:
    """Yield `(frame, end)`: each frame with the time it stops being the nearest, the midpoint to the next."""
    previous, previous_time = None, 0.0
    for frame, time in timed:
        if previous is not None:
            yield previous, (previous_time + time) / 2
        previous, previous_time = frame, time
    if previous is not None:
        # The last frame shows until the video ends; 1% slack absorbs rounded timestamps.
        yield previous, previous_time + 0.99 * frame_span


def _resample(shown: Iterable[tuple], fps: float, convert: Callable, stats: DecodeStats) -> Iterator[np.ndarray]:
    """Yield a frame for every output time `k / fps` before its end, converting each frame once."""
    next_index = 0  # k of the next output time k / fps
    for frame, end in shown:
        rgb = None
        while next_index / fps < end - 1e-9:
            if rgb is None:
                rgb = convert(frame)
            next_index += 1
            stats.frames += 1
            yield rgb


def find_videos(inputs: list[str | os.PathLike]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and directories (not recursive) into video paths.

    Returns `(videos, problems)`: files are taken as given (any suffix), directories contribute
    their files with a known video suffix in sorted order; a missing path becomes a problem
    `(path, message)` instead of an exception so a batch run can report it and go on.
    """
    videos: list[Path] = []
    problems: list[tuple[Path, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                problems.append((path, f"{path}: no video files ({', '.join(sorted(VIDEO_SUFFIXES))})"))
            videos.extend(found)
        elif path.is_file():
            videos.append(path)
        else:
            problems.append((path, f"{path}: no such file or directory; check the path"))
    return videos, problems

