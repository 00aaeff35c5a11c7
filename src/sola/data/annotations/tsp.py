"""The `tsp` format: TSP's ground-truth CSV `video-name,t-start,t-end,action-label,...`.

Background (`no action`) regions are skipped; durations and fps come from the file's own columns or
TSP's metadata CSV (`filename,video-duration,fps,video-frames`), found beside it when not given.
"""

from __future__ import annotations

import math
from pathlib import Path

from sola.data.annotations.formats import register_format
from sola.data.annotations.model import VideoAnnotation
from sola.data.annotations.parse import _csv_records, _has_columns, _make_segment, _optional_number, _subset_from_name

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
