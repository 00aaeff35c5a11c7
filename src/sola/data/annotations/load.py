"""Reading annotation files: `load_annotations` (the entry point) and `detect_format` (sniffing).

Loading picks the format (forced, or detected from the file by the registered formats), finds a
metadata CSV beside the file when the format wants one, merges its durations / fps / subsets,
validates segments against the video (`bad_segments` policy) and fills missing label ids.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

from sola.core.errors import AnnotationError, SolaNote
from sola.core.inputs import input_file
from sola.data.annotations.formats import FORMATS
from sola.data.annotations.model import (MAX_SECONDS, Annotations, VideoAnnotation, _bare_id, aliased_ids,
                                         clean_video_id)
from sola.data.annotations.parse import _csv_header, _csv_rows, _json_cache, _number, _subset_from_name, _warn_videos

BAD_SEGMENT_POLICIES = ("error", "clip", "keep")
# Every command's default: the ground truth as written, as the official evaluators read it (the note that
# `bad_segment_note` makes says how many segments that concerns).
DEFAULT_BAD_SEGMENTS = "keep"
# Segments may overrun the stated duration by this much (seconds) before they count as outside
# the video: real files overrun by rounding (BSN: up to 0.85 s over 22k segments).
OVERRUN_SLACK = 1.0


def load_annotations(
    path: str | os.PathLike,
    fmt: str | None = None,
    metadata: str | os.PathLike | None = None,
    bad_segments: str = DEFAULT_BAD_SEGMENTS,
) -> Annotations:
    """Read an annotation file of any supported format into `Annotations` (seconds).

    `metadata`: TSP metadata CSV or BSN `video_info_new.csv` (looked up beside `path` when omitted).
    `bad_segments`: "keep" (`DEFAULT_BAD_SEGMENTS`) keeps segments outside the video as written, "clip" clips
    them to [0, duration] (dropping those wholly outside), "error" raises on them. A segment that ends before it
    starts is dropped under "clip" and refused otherwise (nothing can score or learn it); a negative duration is
    always refused. Under "clip" and "error", segments that overrun the duration by at most `OVERRUN_SLACK` seconds
    are clipped. The result's `bad_segments` counts what the policy met, and a `SolaNote` says it
    (`bad_segment_note`). Raises `AnnotationError` naming the file and the fix, also for two ids of one video
    (`X` and `v_X`). Warns (`SolaWarning`) naming the videos without a subset, durations or an annotation list when
    others have them: every `--subset` leaves the first out.
    """
    path = input_file(path, "annotation file", AnnotationError)
    if bad_segments not in BAD_SEGMENT_POLICIES:
        raise AnnotationError(f"bad_segments must be one of {', '.join(BAD_SEGMENT_POLICIES)}, got {bad_segments!r}")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise AnnotationError(f"unknown annotation format {fmt!r}; known: {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    meta_path = input_file(metadata, "metadata file", AnnotationError) if metadata is not None else None
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
    _check_video_ids(videos, path)
    counts = {"policy": bad_segments, "outside": 0, "reversed": 0, "changed": 0}
    for video in videos.values():
        for key, value in _check_segments(video, path, bad_segments).items():
            counts[key] += value
    _fill_label_ids(videos)
    annotations = Annotations(videos, source=str(path))
    annotations.bad_segments = counts
    note = bad_segment_note(annotations)
    if note:
        warnings.warn(note, SolaNote, stacklevel=2)
    return annotations


def bad_segment_note(annotations: Annotations) -> str | None:
    """One line on what `--bad-segments` did with the file's segments that lie outside their video or end before
    they start, or None when there were none."""
    counts = getattr(annotations, "bad_segments", None)
    if not counts or not (counts["outside"] or counts["reversed"]):
        return None
    found = " and ".join(text for text in (f"{counts['outside']} segment(s) outside their video" if counts["outside"]
                                           else "", f"{counts['reversed']} that end before they start"
                                           if counts["reversed"] else "") if text)
    if counts["policy"] == "keep":  # (reversed segments are refused under keep)
        return (f"{annotations.source}: kept {found} as written (--bad-segments keep, the default, as the official "
                "evaluators read them; clip trims them to the video, error refuses them)")
    return (f"{annotations.source}: {found}: clipped or dropped {counts['changed']} (--bad-segments clip; keep "
            "reads them as written)")


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


def _check_video_ids(videos: dict[str, VideoAnnotation], path: Path) -> None:
    """Refuse two ids of one video (they would be merged wherever ids are matched); name the videos
    that lack a subset or a duration others have (`SolaWarning`)."""
    pair = aliased_ids(videos)
    if pair:
        raise AnnotationError(
            f"{path}: video ids {pair[0]!r} and {pair[1]!r} name the same video (ids match with or without 'v_' "
            "and a file extension); keep one entry per video"
        )
    no_subset = [video_id for video_id, video in videos.items() if not video.subset]
    if len(no_subset) < len(videos):
        _warn_videos(path, no_subset, len(videos), "have no subset (left out of every --subset: training, "
                     "validation, test); give each a subset")
    no_duration = [video_id for video_id, video in videos.items() if not math.isfinite(video.duration)]
    if len(no_duration) < len(videos):
        _warn_videos(path, no_duration, len(videos), "have no duration (their segments are not checked against "
                     "it; a rescaled snippet grid needs it); give each a duration in seconds")


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


def _check_segments(video: VideoAnnotation, path: Path, policy: str) -> dict[str, int]:
    """Validate (and per `policy` clip) the segments of one video; returns the counts of segments outside the
    video, reversed, and changed (clipped or dropped); raises `AnnotationError` under "error"."""
    duration = video.duration
    if duration < 0:  # NaN (unknown) compares False
        raise AnnotationError(
            f"{path}: video {video.video_id!r}: duration {duration} s is negative; write its length in seconds"
        )
    counts = {"outside": 0, "reversed": 0, "changed": 0}
    kept = []
    for seg in video.segments:
        if not (abs(seg.start) <= MAX_SECONDS and abs(seg.end) <= MAX_SECONDS):  # also NaN: under every policy
            raise AnnotationError(
                f"{path}: video {video.video_id!r}: segment [{seg.start:g}, {seg.end:g}] beyond {MAX_SECONDS:g} seconds "
                "(31 years) or not a number; write times in seconds"
            )
        if seg.end < seg.start:
            counts["reversed"] += 1
            if policy != "clip":  # no evaluator or head can use it as written
                raise AnnotationError(
                    f"{path}: video {video.video_id!r}: segment [{seg.start}, {seg.end}] ends before it "
                    "starts; fix the file or load with bad_segments='clip' (--bad-segments clip) to drop it"
                )
            counts["changed"] += 1
            continue
        known = math.isfinite(duration)
        outside = seg.start < -OVERRUN_SLACK or (known and seg.end > duration + OVERRUN_SLACK)
        counts["outside"] += int(outside)
        if outside and policy == "error":
            raise AnnotationError(
                f"{path}: video {video.video_id!r}: segment [{seg.start}, {seg.end}] lies outside the video "
                f"(0 to {duration} s); fix the file or load with bad_segments='clip' (--bad-segments clip) "
                "to clip it, or 'keep' to keep it as written"
            )
        if policy != "keep":
            if known and seg.start >= duration:
                counts["changed"] += 1
                continue
            before = (seg.start, seg.end)
            seg.start = max(seg.start, 0.0)
            if known:
                seg.end = min(seg.end, duration)
            counts["changed"] += int(outside and (seg.start, seg.end) != before)
        kept.append(seg)
    video.segments = kept
    return counts


def _fill_label_ids(videos: dict[str, VideoAnnotation]) -> None:
    """Give segments without a `label_id` the index of their label in sorted order."""
    if all(s.label_id is not None or s.ambiguous for v in videos.values() for s in v.segments):
        return
    index = Annotations(videos).label_index()
    for video in videos.values():
        for seg in video.segments:
            if not seg.ambiguous:
                seg.label_id = index[seg.label]
