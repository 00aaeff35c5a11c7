"""Temporal annotations: every common file format read into one model, times in seconds.

Formats (detected from the file, or forced with `fmt`); each reader registers itself with
`register_format`, which also gives `detect_format` and `--annotation-format` their choices:
- `activitynet`: ActivityNet-style JSON `{"database": {vid: {subset, duration, fps, annotations:
  [{segment: [s, e], label, label_id?}]}}}`, including ActionFormer's `thumos14.json`, G-TAD's
  ground truth (segments as strings) and SoLa's synthetic `annotations.json` (extra per-video
  `feat_stride` / `num_frames`).
- `gtad`: G-TAD's THUMOS CSV `video,type,type_idx,start,end,startFrame,endFrame`.
- `tsp`: TSP's ground-truth CSV (`video-name,t-start,t-end,action-label,...`), optionally with its
  metadata CSV (`filename,video-duration,fps,video-frames`).
- `bsn`: BSN/BMN `anet_anno_action.json` + `video_info_new.csv` (subset per video).

Snippet time conventions (see `SnippetGrid`): a fixed stride (ActionFormer: snippet i is centred
at `(i * feat_stride + num_frames / 2) / fps` seconds) or features rescaled to T snippets spread
evenly over the duration (ActivityNet's 100 snippets: snippet i is centred at `(i + 0.5) * D / T`).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sola.core.errors import AnnotationError

BAD_SEGMENT_POLICIES = ("error", "clip", "keep")
AMBIGUOUS = "ambiguous"
# Segments may overrun the stated duration by this much (seconds) before they count as outside
# the video: real files overrun by rounding (BSN: up to 0.85 s over 22k segments).
OVERRUN_SLACK = 1.0
_FILE_SUFFIXES = (".npy", ".npz", ".pt", ".pkl", ".pickle", ".csv", ".h5", ".mp4", ".mkv", ".avi", ".webm")
_SUBSET_ALIASES = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
}


@dataclass
class Segment:
    """One annotated action instance; `start`/`end` in seconds."""

    start: float
    end: float
    label: str
    label_id: int | None = None
    ambiguous: bool = False


@dataclass
class VideoAnnotation:
    """Everything annotated about one video; `duration` in seconds (NaN when the file lacks it)."""

    video_id: str
    subset: str
    duration: float
    fps: float | None
    segments: list[Segment] = field(default_factory=list)
    feat_stride: float | None = None  # frames between snippets, when the file states it
    num_frames: float | None = None  # frames per snippet window, when the file states it


def canonical_subset(name: str) -> str:
    """Lower-case subset name with aliases folded: val/valid -> validation, train -> training."""
    lowered = name.strip().lower()
    return _SUBSET_ALIASES.get(lowered, lowered)


def clean_video_id(name: str) -> str:
    """A video id without a file extension (`highjump.npy` -> `highjump`)."""
    if name.lower().endswith(_FILE_SUFFIXES):  # every suffix is one dot and letters
        return name[: name.rindex(".")]
    return name


def _bare_id(video_id: str) -> str:
    return video_id[2:] if video_id.startswith("v_") else video_id


class Annotations(Mapping):
    """Read-only mapping `video_id -> VideoAnnotation` with subset and label helpers."""

    def __init__(self, videos: Mapping[str, VideoAnnotation], source: str = "") -> None:
        self._videos = dict(sorted(videos.items()))
        self.source = source
        self._by_bare: dict[str, str] | None = None

    def __getitem__(self, video_id: str) -> VideoAnnotation:
        return self._videos[video_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._videos)

    def __len__(self) -> int:
        return len(self._videos)

    def __repr__(self) -> str:
        return f"Annotations({len(self)} videos, {self.num_segments()} segments, source={self.source!r})"

    def get(self, video_id: str, default: VideoAnnotation | None = None) -> VideoAnnotation | None:
        """The annotation of `video_id`, also found as `v_<id>` <-> `<id>` or with a file extension."""
        if video_id in self._videos:
            return self._videos[video_id]
        if self._by_bare is None:
            self._by_bare = {_bare_id(k): k for k in self._videos}
        key = self._by_bare.get(_bare_id(clean_video_id(video_id)))
        return self._videos[key] if key is not None else default

    def subset(self, name: str) -> "Annotations":
        """Videos of one subset; names match case-insensitively (`val`/`valid` = `validation`)."""
        wanted = canonical_subset(name)
        chosen = {k: v for k, v in self._videos.items() if canonical_subset(v.subset) == wanted}
        return Annotations(chosen, source=self.source)

    def subsets(self) -> dict[str, int]:
        """Number of videos per subset name, as written in the file."""
        counts: dict[str, int] = {}
        for video in self._videos.values():
            counts[video.subset] = counts.get(video.subset, 0) + 1
        return counts

    def labels(self) -> list[str]:
        """Sorted class names (ambiguous segments excluded)."""
        return sorted({s.label for v in self._videos.values() for s in v.segments if not s.ambiguous})

    def label_index(self) -> dict[str, int]:
        """Class name -> class index: the file's `label_id`s when complete, else sorted order."""
        ids: dict[str, int] = {}
        for video in self._videos.values():
            for seg in video.segments:
                if not seg.ambiguous and seg.label_id is not None:
                    ids.setdefault(seg.label, seg.label_id)
        labels = self.labels()
        if set(ids) == set(labels) and len(set(ids.values())) == len(ids):
            return {label: ids[label] for label in labels}
        return {label: i for i, label in enumerate(labels)}

    def num_segments(self, include_ambiguous: bool = True) -> int:
        """Number of segments over all videos."""
        return sum(
            1 for v in self._videos.values() for s in v.segments if include_ambiguous or not s.ambiguous
        )


# -- formats -----------------------------------------------------------------------------------
Reader = Callable[[Path, Path | None], dict[str, VideoAnnotation]]


@dataclass(frozen=True)
class AnnotationFormat:
    """One annotation format: how to recognise its files and how to read one (see `register_format`)."""

    name: str
    read: Reader  # (file, metadata CSV or None) -> {video id: VideoAnnotation}
    detect: Callable[[Path], bool]  # True for a file of this format (asked only for `suffixes`)
    suffixes: tuple[str, ...]
    title: str  # for --help and messages: "G-TAD CSV"
    shape: str  # what its files look like, for messages: "video,type,start,end,..."
    sibling: str | None = None  # without metadata given, use the one CSV beside the file with this word
    merge_metadata: bool = True  # fill duration / fps / subset from the metadata CSV after `read`
    hint: Callable[[Path], str | None] | None = None  # a message for a file that goes with this format


FORMATS: dict[str, AnnotationFormat] = {}


def register_format(
    name: str,
    *,
    suffixes: tuple[str, ...],
    detect: Callable[[Path], bool],
    title: str,
    shape: str,
    sibling: str | None = None,
    merge_metadata: bool = True,
    hint: Callable[[Path], str | None] | None = None,
) -> Callable[[Reader], Reader]:
    """Decorator of a reader `(path, metadata) -> {video_id: VideoAnnotation}`: make it format `name`
    of `load_annotations`, `detect_format` and `--annotation-format` (the fields: `AnnotationFormat`)."""

    def decorate(read: Reader) -> Reader:
        FORMATS[name] = AnnotationFormat(
            name, read, detect, tuple(suffixes), title, shape, sibling, merge_metadata, hint
        )
        return read

    return decorate


# -- reading ------------------------------------------------------------------------------------
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
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"annotation file {path} does not exist")
    if bad_segments not in BAD_SEGMENT_POLICIES:
        raise AnnotationError(f"bad_segments must be one of {', '.join(BAD_SEGMENT_POLICIES)}, got {bad_segments!r}")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise AnnotationError(f"unknown annotation format {fmt!r}; known: {', '.join(FORMATS)}")
    spec = FORMATS[fmt]
    meta_path = Path(metadata) if metadata is not None else None
    if meta_path is not None and not meta_path.is_file():
        raise AnnotationError(f"metadata file {meta_path} does not exist")
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


_json_cache: dict[tuple, object] = {}


def _load_json(path: Path):
    """Parse a JSON file, refusing duplicate keys; the last file parsed is cached (detect + read)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _json_cache:
        return _json_cache[key]

    def no_duplicates(pairs):
        mapping = dict(pairs)
        if len(mapping) != len(pairs):
            keys = [k for k, _ in pairs]
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise AnnotationError(f"{path}: duplicate key(s) {dup[:5]} (duplicate video ids?); keep one of each")
        return mapping

    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not valid JSON ({exc}); the file is truncated or corrupt") from None
    except UnicodeDecodeError:
        raise AnnotationError(f"{path}: not a UTF-8 text file") from None
    _json_cache.clear()
    _json_cache[key] = data
    return data


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [name.strip() for name in next(csv.reader(handle), [])]
    except UnicodeDecodeError:
        raise AnnotationError(f"{path}: not a UTF-8 text file") from None


def _csv_rows(path: Path, required: set[str]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise AnnotationError(f"{path}: missing CSV column(s) {sorted(missing)}")
        return list(reader)


def _number(text, path: Path, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise AnnotationError(f"{path}: {where}: {text!r} is not a number; fix the file") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{path}: {where}: value {text!r} is not finite; fix the file")
    return value


def _optional_number(value, path: Path, where: str) -> float | None:
    return None if value is None or value == "" else _number(value, path, where)


def _make_segment(start, end, label: str, label_id, path: Path, where: str) -> Segment:
    label = "" if label is None else str(label).strip()  # JSON null is no label, not the class "None"
    ambiguous = label.lower() == AMBIGUOUS
    return Segment(
        start=_number(start, path, where),
        end=_number(end, path, where),
        label=label,
        label_id=None if ambiguous or label_id in (None, "") else int(label_id),
        ambiguous=ambiguous,
    )


def _subset_from_name(path: Path) -> str:
    """Subset named by a file (`..._val_...`, `..._test_...`), or "" if none."""
    for token in re.split(r"[^a-z]+", path.stem.lower()):
        if token in _SUBSET_ALIASES:
            return _SUBSET_ALIASES[token]
    return ""


def _subset_from_thumos_id(video_id: str) -> str:
    if video_id.startswith("video_validation_"):
        return "validation"
    if video_id.startswith("video_test_"):
        return "test"
    return ""


def _first_entry(path: Path) -> dict | None:
    """The first value of a JSON object file when it is a mapping (a per-video entry), else None."""
    data = _load_json(path)
    first = next(iter(data.values()), None) if isinstance(data, dict) else None
    return first if isinstance(first, dict) else None


def _is_activitynet(path: Path) -> bool:
    data = _load_json(path)
    if isinstance(data, dict) and ("database" in data or "GT" in data):
        return True
    first = _first_entry(path)
    return first is not None and "annotations" in first and "duration_second" not in first


@register_format("activitynet", suffixes=(".json",), detect=_is_activitynet, title="ActivityNet/ActionFormer JSON",
                 shape="{'database': {video: {subset, duration, annotations: [{segment, label}]}}}")
def _read_activitynet(path: Path, metadata: Path | None) -> dict[str, VideoAnnotation]:
    data = _load_json(path)
    database = data.get("database", data.get("GT")) if isinstance(data, dict) else None
    if database is None and isinstance(data, dict):
        database = data
    if not isinstance(database, dict):
        raise AnnotationError(f"{path}: expected a 'database' mapping of video id -> annotation")
    videos: dict[str, VideoAnnotation] = {}
    for raw_id, entry in database.items():
        video_id = clean_video_id(str(raw_id))
        if not isinstance(entry, dict):
            raise AnnotationError(f"{path}: video {raw_id!r}: expected a mapping, got {type(entry).__name__}")
        if video_id in videos:
            raise AnnotationError(f"{path}: duplicate video id {video_id!r}; keep one entry per video")
        segments = []
        for k, ann in enumerate(entry.get("annotations") or []):
            where = f"video {raw_id!r} annotation {k}"
            seg = ann.get("segment")
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                raise AnnotationError(f"{path}: {where}: 'segment' must be [start, end] in seconds, got {seg!r}")
            segments.append(_make_segment(seg[0], seg[1], ann.get("label", ""), ann.get("label_id"), path, where))
        subset = str(entry.get("subset", "")) or _subset_from_thumos_id(video_id)
        duration = _optional_number(entry.get("duration"), path, f"video {raw_id!r} duration")
        videos[video_id] = VideoAnnotation(
            video_id=video_id,
            subset=subset,
            duration=math.nan if duration is None else duration,
            fps=_optional_number(entry.get("fps"), path, f"video {raw_id!r} fps"),
            segments=segments,
            feat_stride=_optional_number(entry.get("feat_stride"), path, f"video {raw_id!r} feat_stride"),
            num_frames=_optional_number(entry.get("num_frames"), path, f"video {raw_id!r} num_frames"),
        )
    return videos


def _has_columns(*names: str) -> Callable[[Path], bool]:
    """A `detect` for CSV formats: the header holds all of `names`."""
    return lambda path: set(names) <= set(_csv_header(path))


def _csv_records(path: Path, id_column: str, required: set[str]) -> Iterator[tuple[str, str, dict[str, str]]]:
    """`(video id, "line N", row)` of every row of an annotation CSV that has the `required` columns."""
    for line, row in enumerate(_csv_rows(path, {id_column} | required), start=2):
        yield clean_video_id(row[id_column].strip()), f"line {line}", row


GTAD_COLUMNS = ("video", "type", "start", "end")


@register_format("gtad", suffixes=(".csv",), detect=_has_columns(*GTAD_COLUMNS), title="G-TAD CSV",
                 shape="video,type,start,end,...")
def _read_gtad(path: Path, metadata: Path | None) -> dict[str, VideoAnnotation]:
    file_subset = _subset_from_name(path)
    videos: dict[str, VideoAnnotation] = {}
    fps_votes: dict[str, float] = {}
    for video_id, where, row in _csv_records(path, "video", set(GTAD_COLUMNS)):
        seg = _make_segment(row["start"], row["end"], row["type"], None, path, where)
        video = videos.get(video_id)
        if video is None:
            subset = _subset_from_thumos_id(video_id) or file_subset
            video = videos[video_id] = VideoAnnotation(video_id, subset, math.nan, None, [])
        video.segments.append(seg)
        # G-TAD stores frames beside seconds: their ratio is the frame rate.
        frame = row.get("startFrame")
        if frame not in (None, "") and seg.start > 0 and video_id not in fps_votes:
            fps_votes[video_id] = round(_number(frame, path, where) / seg.start, 3)
    for video_id, fps in fps_votes.items():
        videos[video_id].fps = fps
    return videos


TSP_COLUMNS = ("video-name", "t-start", "t-end", "action-label")


@register_format("tsp", suffixes=(".csv",), detect=_has_columns(*TSP_COLUMNS), title="TSP CSV",
                 shape="video-name,t-start,t-end,action-label,...", sibling="metadata")
def _read_tsp(path: Path, metadata: Path | None) -> dict[str, VideoAnnotation]:
    subset = _subset_from_name(path)
    videos: dict[str, VideoAnnotation] = {}
    for video_id, where, row in _csv_records(path, "video-name", set(TSP_COLUMNS)):
        video = videos.get(video_id)
        if video is None:
            duration = _optional_number(row.get("video-duration"), path, f"{where} video-duration")
            video = videos[video_id] = VideoAnnotation(
                video_id,
                subset,
                math.nan if duration is None else duration,
                _optional_number(row.get("fps"), path, f"{where} fps"),
                [],
            )
        region = (row.get("temporal-region-label") or "").strip().lower()
        label = row["action-label"].strip()
        if region == "no action" or (not region and not label):
            continue  # TSP also lists the background regions between actions
        video.segments.append(_make_segment(row["t-start"], row["t-end"], label, None, path, where))
    return videos


def _is_bsn(path: Path) -> bool:
    first = _first_entry(path)  # not None: the file is a JSON object
    return first is not None and "duration_second" in first and not {"database", "GT"} & set(_load_json(path))


def _bsn_video_info_hint(path: Path) -> str | None:
    """Loading BSN's video_info CSV as annotations: say it is BSN's metadata."""
    if path.suffix.lower() == ".csv" and {"video", "subset", "numFrame"} <= set(_csv_header(path)):
        return (f"{path} is a BSN video_info CSV (subsets only); load the anet_anno_action.json "
                "and pass this file as metadata (--metadata)")
    return None


# BSN's subsets, durations and fps come from its own video_info CSV (read here, not merged).
@register_format("bsn", suffixes=(".json",), detect=_is_bsn, title="BSN JSON",
                 shape="anet_anno_action.json {video: {duration_second, annotations}} + video_info CSV",
                 sibling="video_info", merge_metadata=False, hint=_bsn_video_info_hint)
def _read_bsn(path: Path, metadata: Path | None) -> dict[str, VideoAnnotation]:
    data = _load_json(path)
    if metadata is None:
        raise AnnotationError(
            f"{path}: BSN annotations keep subsets in a separate video_info CSV; pass it as "
            "metadata (--metadata video_info_new.csv)"
        )
    info = {
        clean_video_id(r["video"].strip()): r
        for r in _csv_rows(metadata, {"video", "subset"})
    }
    videos: dict[str, VideoAnnotation] = {}
    for raw_id, entry in data.items():
        video_id = clean_video_id(str(raw_id))
        where = f"video {raw_id!r}"
        segments = [
            _make_segment(a["segment"][0], a["segment"][1], a.get("label", ""), a.get("label_id"), path, where)
            for a in entry.get("annotations") or []
        ]
        row = info.get(video_id, {})
        fps = _optional_number(row.get("fps"), metadata, f"{where} fps")
        if fps is None and entry.get("duration_frame") and entry.get("duration_second"):
            fps = float(entry["duration_frame"]) / float(entry["duration_second"])
        videos[video_id] = VideoAnnotation(
            video_id,
            str(row.get("subset", "")),
            _number(entry["duration_second"], path, f"{where} duration_second"),
            fps,
            segments,
        )
    return videos


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


# -- seconds <-> snippet index ------------------------------------------------------------------
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


# -- feature ids <-> annotation ids -------------------------------------------------------------
@dataclass
class IdMatch:
    """How feature video ids pair with annotation video ids."""

    pairs: dict[str, str]  # feature id -> annotation id
    features_without_annotation: list[str]
    annotations_without_features: list[str]

    def summary(self, limit: int = 5) -> str:
        """One line: matched count and both kinds of misses with their first few names."""

        def few(names: list[str]) -> str:
            shown = ", ".join(names[:limit])
            return f" ({shown}{', ...' if len(names) > limit else ''})" if names else ""

        return (
            f"{len(self.pairs)} videos matched; {len(self.features_without_annotation)} with features but no "
            f"annotation{few(self.features_without_annotation)}; {len(self.annotations_without_features)} "
            f"annotated without features{few(self.annotations_without_features)}"
        )


def _by_video(names: list[str], side: str, fix: str = "") -> dict[str, str]:
    """Bare video id (no `v_`, no extension) -> name; raises `AnnotationError` if two names are one video."""
    found: dict[str, str] = {}
    for name in names:
        key = _bare_id(clean_video_id(name))
        if key in found:
            raise AnnotationError(
                f"duplicate video ids in the {side}: {found[key]!r} and {name!r} name the same video{fix}"
            )
        found[key] = name
    return found


def match_ids(feature_ids, annotation_ids, strict: bool = False) -> IdMatch:
    """Pair feature ids with annotation ids, treating `v_<id>` and `<id>` as the same video.

    Raises `AnnotationError` when two ids of one side name the same video, and, with `strict`,
    when any video lacks a partner (the message gives counts and the first few names).
    """
    features = [str(v) for v in feature_ids]
    annotated = [str(v) for v in annotation_ids]
    annotation_by_key = _by_video(annotated, "annotations")
    feature_by_key = _by_video(features, "features", "; remove one")
    pairs = {name: annotation_by_key[key] for key, name in feature_by_key.items() if key in annotation_by_key}
    missing = [name for key, name in feature_by_key.items() if key not in annotation_by_key]
    unfeatured = sorted(set(annotated) - set(pairs.values()))
    result = IdMatch(pairs, sorted(missing), unfeatured)
    if strict and (missing or unfeatured):
        raise AnnotationError(f"feature and annotation ids differ (--strict): {result.summary()}")
    return result
