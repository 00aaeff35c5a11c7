"""The `gtad` format: G-TAD's THUMOS CSV `video,type,type_idx,start,end,startFrame,endFrame`.

Times are seconds; the frame columns beside them give each video's frame rate. Subsets come from
THUMOS video ids or the file name; durations only from a metadata CSV.
"""

from __future__ import annotations

import math
from pathlib import Path

from sola.data.annotations.formats import register_format
from sola.data.annotations.model import VideoAnnotation
from sola.data.annotations.parse import (_csv_records, _has_columns, _make_segment, _number, _subset_from_name,
                                         _subset_from_thumos_id)

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
