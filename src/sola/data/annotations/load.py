"""Reading annotation files: `load_annotations` (the entry point) and `detect_format` (sniffing).

Loading picks the format (forced, or detected from the file by the registered formats), finds a
metadata CSV beside the file when the format wants one, merges its durations / fps / subsets,
validates segments against the video (`bad_segments` policy) and fills missing label ids.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from sola.core.errors import AnnotationError
from sola.core.inputs import input_file
from sola.data.annotations.formats import FORMATS
from sola.data.annotations.model import Annotations, VideoAnnotation, _bare_id, clean_video_id
from sola.data.annotations.parse import _csv_header, _csv_rows, _json_cache, _number, _subset_from_name

BAD_SEGMENT_POLICIES = ("error", "clip", "keep")
# Segments may overrun the stated duration by this much (seconds) before they count as outside
# the video: real files overrun by rounding (BSN: up to 0.85 s over 22k segments).
OVERRUN_SLACK = 1.0


def load_annotations(
    path: str | os.PathLike,
    fmt: str | None = None,
    metadata: str | os.PathLike | None = None,
    bad_segments: str = "error",
) -> Annotations:
    """Read an annotation file of any supported format into `Annotations` (seconds).

    `metadata`: TSP metadata CSV or BSN `video_info_new.csv` (looked up beside `path` when omitted).
    `bad_segments`: "error" (default) raises on segments with end < start or outside the video,
    "clip" clips them to [0, duration] (dropping those wholly outside), "keep" keeps them as written.
    Segments that overrun the duration by at most `OVERRUN_SLACK` seconds are always clipped.
    Raises `AnnotationError` naming the file and the fix.
    """
    path = input_file(path, "annotation file", AnnotationError)
    if bad_segments not in BAD_SEGMENT_POLICIES:
        raise AnnotationError(f"bad_segments must be one of {', '.join(BAD_SEGMENT_POLICIES)}, got {bad_segments!r}")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise AnnotationError(f"unknown annotation format {fmt!r}; known: {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    meta_path = Path(metadata) if metadata is not None else None
    if meta_path is not None:
        input_file(meta_path, "metadata file", AnnotationError)
    if meta_path is None and spec.sibling is not None:
        meta_path = _sibling(path, spec.sibling)
    try:
        videos = spec.read(path, meta_path)
        if meta_path is not None and spec.merge_metadata:
            _apply_metadata(videos, meta_path)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise AnnotationError(
            f"{path}: not a valid {fmt} annotation file ({type(exc).__name__}: {exc}); "
            "check the format (force it with --annotation-format)"
        ) from None
    finally:
        _json_cache.clear()
    for video in videos.values():
        _check_segments(video, path, bad_segments)
    _fill_label_ids(videos)
    return Annotations(videos, source=str(path))


def detect_format(path: Path) -> str:
    """The registered format whose `detect` accepts the file (only formats of its suffix are asked).

    Raises `AnnotationError` when none or several accept it, naming what was expected.
    """
    suffix = path.suffix.lower()
    candidates = [spec for spec in FORMATS.values() if suffix in spec.suffixes]
    if not candidates:
        known = dict.fromkeys(s for spec in FORMATS.values() for s in spec.suffixes)
        raise AnnotationError(f"{path}: unknown annotation file type {suffix!r}; expected {' or '.join(known)}")
    found = [spec.name for spec in candidates if spec.detect(path)]
    if len(found) > 1:
        raise AnnotationError(
            f"{path} looks like several annotation formats ({', '.join(found)}); force one with --annotation-format"
        )
    if found:
        return found[0]
    for spec in FORMATS.values():
        hint = spec.hint(path) if spec.hint is not None else None
        if hint:
            raise AnnotationError(hint)
    header = f" header {sorted(_csv_header(path))}" if suffix == ".csv" else ""
    raise AnnotationError(
        f"{path}: unrecognised annotation {suffix.lstrip('.').upper()}{header}; expected "
        + " or ".join(f"{spec.title} ({spec.shape})" for spec in candidates)
    )


def _sibling(path: Path, word: str) -> Path | None:
    """The one CSV beside `path` whose name contains `word` and shares its subset, if unique."""
    subset = _subset_from_name(path)
    found = [
        p
        for p in sorted(path.parent.glob(f"*{word}*.csv"))
        if p != path and (not subset or _subset_from_name(p) in (subset, ""))
    ]
    return found[0] if len(found) == 1 else None


def _apply_metadata(videos: dict[str, VideoAnnotation], metadata: Path) -> None:
    """Fill duration / fps / subset from a metadata CSV (TSP metadata or BSN video_info)."""
    header = set(_csv_header(metadata))
    id_column = next((c for c in ("video-name", "video", "filename") if c in header), None)
    if id_column is None:
        raise AnnotationError(f"{metadata}: metadata CSV needs a 'filename', 'video' or 'video-name' column")
    rows = _csv_rows(metadata, {id_column})
    by_bare = {_bare_id(k): k for k in videos}
    for line, row in enumerate(rows, start=2):
        video_id = by_bare.get(_bare_id(clean_video_id(row[id_column].strip())))
        if video_id is None:
            continue
        video = videos[video_id]
        duration = row.get("video-duration") or row.get("seconds") or row.get("duration")
        if duration not in (None, ""):
            video.duration = _number(duration, metadata, f"line {line} duration")
        if row.get("fps") not in (None, ""):
            video.fps = _number(row["fps"], metadata, f"line {line} fps")
        if row.get("subset"):
            video.subset = row["subset"].strip()


def _check_segments(video: VideoAnnotation, path: Path, policy: str) -> None:
    """Validate (and per `policy` clip) the segments of one video; raises `AnnotationError`."""
    duration = video.duration
    if duration < 0 and policy != "keep":  # NaN (unknown) compares False
        raise AnnotationError(
            f"{path}: video {video.video_id!r}: duration {duration} s is negative; write its length in seconds"
        )
    kept = []
    for seg in video.segments:
        if seg.end < seg.start:
            if policy == "error":
                raise AnnotationError(
                    f"{path}: video {video.video_id!r}: segment [{seg.start}, {seg.end}] ends before it "
                    "starts; fix the file or load with bad_segments='clip' (--bad-segments clip) to drop it"
                )
            if policy == "clip":
                continue
        known = math.isfinite(duration)
        outside = seg.start < -OVERRUN_SLACK or (known and seg.end > duration + OVERRUN_SLACK)
        if outside and policy == "error":
            raise AnnotationError(
                f"{path}: video {video.video_id!r}: segment [{seg.start}, {seg.end}] lies outside the video "
                f"(0 to {duration} s); fix the file or load with bad_segments='clip' (--bad-segments clip) "
                "to clip it, or 'keep' to keep it as written"
            )
        if policy != "keep":
            if known and seg.start >= duration:
                continue
            seg.start = max(seg.start, 0.0)
            if known:
                seg.end = min(seg.end, duration)
        kept.append(seg)
    video.segments = kept


def _fill_label_ids(videos: dict[str, VideoAnnotation]) -> None:
    """Give segments without a `label_id` the index of their label in sorted order."""
    if all(s.label_id is not None or s.ambiguous for v in videos.values() for s in v.segments):
        return
    index = Annotations(videos).label_index()
    for video in videos.values():
        for seg in video.segments:
            if not seg.ambiguous:
                seg.label_id = index[seg.label]
