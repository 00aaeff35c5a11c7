"""Prediction files (detections, proposals) and ground truth for the evaluators, as `Segments`.

Prediction layouts, detected from the content:
- official ActivityNet: `{"results": {vid: [{"label", "score", "segment": [s, e]}]}, ...}`
  (proposal files may omit `label`);
- ActionFormer flat: `{"video-id": [...], "t-start": [...], "t-end": [...], "label": [...],
  "score": [...]}` (its `eval_results.pkl`, or the same as JSON); labels may be class ids;
- per-video arrays: `{vid: {"segments": [[s, e], ...], "scores": [...], "labels": [...]}}`, also
  under a top-level `"results"` key; labels may be class ids (`label_id`s of the annotations).
Integer labels are turned into names with the annotations' `label_id`s (`Annotations.label_index`).
"""

from __future__ import annotations

import gc
import json
import os
import pickle
from operator import itemgetter
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sola.core.errors import PredictionError
from sola.core.inputs import input_file
from sola.evaluate.metrics.segments import Segments

try:
    import orjson
except ImportError:  # optional speed: `json` gives the same values
    orjson = None

FLAT_KEYS = ("video-id", "t-start", "t-end", "score")
_SEGMENT, _SCORE, _FIRST, _SECOND = itemgetter("segment"), itemgetter("score"), itemgetter(0), itemgetter(1)


def read_predictions(
    path: str | os.PathLike, label_names: Mapping[int, str] | None = None, require_labels: bool = True
) -> Segments:
    """Read a prediction file of any supported layout into `Segments` (with scores).

    `label_names` maps class ids to names for files that store ids; `require_labels` False accepts
    unlabelled proposals. Raises `PredictionError` naming the file and the fix.
    """
    path = Path(path)
    data = _load(path)
    try:
        if isinstance(data, dict) and all(key in data for key in FLAT_KEYS):
            segments = _from_flat(data, path)
        elif isinstance(data, dict) and isinstance(data.get("results"), dict):
            segments = _from_per_video(data["results"], path)
        elif isinstance(data, dict) and data and all(isinstance(v, (list, dict)) for v in data.values()):
            segments = _from_per_video(data, path)
        else:
            raise PredictionError(
                f"{path}: unrecognised prediction layout; expected the ActivityNet format "
                '{"results": {video: [{label, score, segment}]}}, ActionFormer\'s flat '
                '{"video-id", "t-start", "t-end", "label", "score"} or {video: {segments, scores, labels}}'
            )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise PredictionError(
            f"{path}: malformed predictions ({type(exc).__name__}: {exc}); each prediction needs a "
            "segment [start, end] in seconds, a score and (for detections) a label"
        ) from None
    video, start, end, label, score = segments
    label = _names(label, label_names, path, require_labels)
    return Segments.build(video, start, end, label, score, where=str(path), allow_reversed=True)


def _load(path: Path) -> Any:
    input_file(path, "prediction file", PredictionError)
    suffix = path.suffix.lower()
    # A prediction file is hundreds of thousands of small objects and no cycles: the cyclic
    # garbage collector would rescan them again and again while they are built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        if suffix in (".pkl", ".pickle"):
            with open(path, "rb") as handle:
                return pickle.load(handle)  # ActionFormer's own output; only open files you made
        return parse_json(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise PredictionError(f"{path}: not valid JSON ({exc}); the file is truncated or corrupt") from None
    except (pickle.UnpicklingError, EOFError, UnicodeDecodeError) as exc:
        raise PredictionError(f"{path}: cannot read ({type(exc).__name__}); expected JSON or a pickle") from None
    finally:
        if collecting:
            gc.enable()


def parse_json(data: bytes) -> Any:
    """The JSON document in `data` (UTF-8), parsed by orjson when it is installed (about 3x faster on
    large prediction files), else by `json`. What orjson refuses (NaN, integers beyond 64 bits) is
    parsed again by `json`, so both give the same values and the same errors."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data.decode("utf-8"))


def _from_flat(data: dict, path: Path):
    video = [str(v) for v in data["video-id"]]
    label = data.get("label")
    if label is None:
        label = [""] * len(video)
    return video, np.asarray(data["t-start"]), np.asarray(data["t-end"]), list(np.asarray(label).tolist()), np.asarray(data["score"])


def _from_per_video(results: dict, path: Path):
    videos, counts, start, end, label, score = [], [], [], [], [], []
    for video_id, items in results.items():
        if isinstance(items, dict):  # per-video arrays
            segments = np.asarray(items["segments"], dtype=np.float64).reshape(-1, 2)
            scores = np.asarray(items["scores"], dtype=np.float64).reshape(-1)
            labels = items.get("labels", items.get("label_id", items.get("label")))
            labels = [""] * len(segments) if labels is None else list(np.asarray(labels).reshape(-1).tolist())
            if not len(segments) == len(scores) == len(labels):
                raise PredictionError(
                    f"{path}: video {video_id!r} has {len(segments)} segments, {len(scores)} scores and "
                    f"{len(labels)} labels; give one of each per prediction"
                )
            videos.append(str(video_id))
            counts.append(len(segments))
            start.extend(segments[:, 0].tolist())
            end.extend(segments[:, 1].tolist())
            score.extend(scores.tolist())
            label.extend(labels)
            continue
        if not isinstance(items, list):
            raise PredictionError(f"{path}: video {video_id!r}: expected a list of predictions, got {type(items).__name__}")
        # Whole-list maps: this loop sees every prediction of the file.
        segments = list(map(_SEGMENT, items))
        if set(map(len, segments)) - {2}:
            bad = next(segment for segment in segments if len(segment) != 2)
            raise PredictionError(f"{path}: video {video_id!r}: segment {bad!r} must be [start, end]")
        videos.append(video_id)
        counts.append(len(items))
        start.extend(map(_FIRST, segments))
        end.extend(map(_SECOND, segments))
        label.extend([item.get("label", "") for item in items])
        score.extend(map(_SCORE, items))
    video = np.repeat(np.asarray(videos, dtype=str), counts)  # one id per video, not per prediction
    return video, start, end, label, score


def _names(labels: list, label_names: Mapping[int, str] | None, path: Path, require_labels: bool) -> list[str]:
    """Label strings; integer class ids go through `label_names`."""
    if not labels:
        return []
    is_id = [isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in labels[:1]]
    if is_id[0]:
        if label_names is None:
            raise PredictionError(
                f"{path}: labels are class ids; give annotations whose segments carry label_id so they can be named"
            )
        names = [label_names.get(int(x)) for x in labels]
        missing = sorted({int(x) for x, n in zip(labels, names) if n is None})
        if missing:
            raise PredictionError(
                f"{path}: class id(s) {missing[:5]} are not label_ids of the annotations; check the label map"
            )
        return names
    if set(map(type, labels)) == {str}:
        names = labels
    else:
        names = ["" if x is None else str(x) for x in labels]
    if require_labels and "" in names:
        raise PredictionError(f"{path}: some predictions have no label; detections need one per prediction")
    return names


def ground_truth_segments(annotations, subset: str | None = None) -> Segments:
    """The (non-ambiguous) segments of `annotations` (optionally one subset) as `Segments`.

    Video and segment order follow the annotations. Raises `PredictionError` if none remain.
    """
    chosen = annotations.subset(subset) if subset else annotations
    video, start, end, label = [], [], [], []
    for video_id, entry in chosen.items():
        for seg in entry.segments:
            if seg.ambiguous:
                continue
            video.append(video_id)
            start.append(seg.start)
            end.append(seg.end)
            label.append(seg.label)
    if not video:
        where = f" in subset {subset!r}" if subset else ""
        raise PredictionError(
            f"{getattr(annotations, 'source', 'annotations')}: no ground-truth segments{where}; "
            f"subsets present: {annotations.subsets()}"
        )
    return Segments.build(video, start, end, label, where=str(getattr(annotations, "source", "ground truth")))


def prediction_notes(predictions: Segments, ground_truth_ids, unknown_fate: str) -> list[str]:
    """One line each about predictions an evaluator treats specially: segments that end before they
    start (false positives) and predictions of videos without ground truth (`unknown_fate`: what the
    evaluator does with them, e.g. "scored as false positives")."""
    notes = []
    reversed_note = predictions.reversed_note()
    if reversed_note:
        notes.append(reversed_note)
    known = set(map(str, ground_truth_ids))
    videos = sorted(v for v in distinct(predictions.video) if v not in known)
    if videos:
        count = int(np.isin(predictions.video, videos).sum())
        notes.append(
            f"{count} prediction(s) of {len(videos)} video(s) without ground truth here (e.g. "
            f"{videos[0]!r}) {unknown_fate}, as the official evaluator does; check --subset and the video ids"
        )
    return notes


def distinct(values: np.ndarray) -> list[str]:
    """The distinct strings of `values` (N,) in order of first appearance (hashed: far faster than sorting)."""
    return list(dict.fromkeys(values.tolist()))


def align_video_ids(predictions: Segments, ground_truth_ids) -> Segments:
    """Rename prediction videos `v_<id>` <-> `<id>` (or with a file extension) to the ground truth's ids.

    Ids already in the ground truth, or with no counterpart, stay as they are.
    """
    ids = [str(v) for v in ground_truth_ids]
    known = set(ids)
    bare = {}
    for vid in ids:  # in the given order, so that the first of two ids with one bare form wins every time
        bare.setdefault(_bare(vid), vid)
    renames = {v: bare[_bare(v)] for v in distinct(predictions.video) if v not in known and _bare(v) in bare}
    if not renames:
        return predictions
    video = np.array([renames.get(v, v) for v in predictions.video.tolist()], dtype=str)
    return Segments(video, predictions.start, predictions.end, predictions.label, predictions.score)


def _bare(video_id: str) -> str:
    stem = os.path.splitext(video_id)[0] if video_id.lower().endswith((".npy", ".mp4", ".mkv", ".webm", ".avi")) else video_id
    return stem[2:] if stem.startswith("v_") else stem
