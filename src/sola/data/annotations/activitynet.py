"""The `activitynet` format: ActivityNet-style JSON `{"database": {vid: {subset, duration, annotations}}}`.

Also reads ActionFormer's `thumos14.json`, G-TAD's ground truth (segments as strings, under `GT`),
a bare `{vid: entry}` mapping and SoLa's synthetic `annotations.json` (extra per-video `fps`,
`feat_stride` / `num_frames`). Subsets missing from the file come from THUMOS video ids.
"""

from __future__ import annotations

import math
from pathlib import Path

from sola.core.errors import AnnotationError
from sola.data.annotations.formats import register_format
from sola.data.annotations.model import VideoAnnotation, clean_video_id
from sola.data.annotations.parse import (_annotation_list, _first_entry, _load_json, _make_segment, _optional_number,
                                         _subset_from_thumos_id, _warn_videos)


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
    unannotated: list[str] = []
    for raw_id, entry in database.items():
        video_id = clean_video_id(str(raw_id))
        if not isinstance(entry, dict):
            raise AnnotationError(f"{path}: video {raw_id!r}: expected a mapping, got {type(entry).__name__}")
        if video_id in videos:
            raise AnnotationError(f"{path}: duplicate video id {video_id!r}; keep one entry per video")
        segments = []
        for k, ann in enumerate(_annotation_list(entry, path, raw_id, unannotated)):
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
    _warn_videos(path, unannotated, len(videos), "have no 'annotations' list (read as videos without actions)")
    return videos
