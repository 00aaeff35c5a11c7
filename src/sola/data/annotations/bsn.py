"""The `bsn` format: BSN/BMN `anet_anno_action.json` with its `video_info_new.csv` (subset per video).

The JSON holds `{video: {duration_second, duration_frame, annotations}}`; subsets and fps come from
the video_info CSV (fps else from the frame count), which is required (found beside the JSON when not
given). Loading that CSV on its own as annotations gets a hint saying what it is.
"""

from __future__ import annotations

from pathlib import Path

from sola.core.errors import AnnotationError
from sola.data.annotations.formats import register_format
from sola.data.annotations.model import VideoAnnotation, clean_video_id
from sola.data.annotations.parse import (_annotation_list, _csv_header, _csv_rows, _first_entry, _load_json,
                                         _make_segment, _number, _optional_number, _warn_videos)


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
    unannotated: list[str] = []
    for raw_id, entry in data.items():
        video_id = clean_video_id(str(raw_id))
        where = f"video {raw_id!r}"
        if not isinstance(entry, dict):
            raise AnnotationError(f"{path}: {where}: expected a mapping, got {type(entry).__name__}")
        if video_id in videos:
            raise AnnotationError(f"{path}: duplicate video id {video_id!r}; keep one entry per video")
        segments = [
            _make_segment(a["segment"][0], a["segment"][1], a.get("label", ""), a.get("label_id"), path, where)
            for a in _annotation_list(entry, path, raw_id, unannotated)
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
    _warn_videos(path, unannotated, len(videos), "have no 'annotations' list (read as videos without actions)")
    return videos
