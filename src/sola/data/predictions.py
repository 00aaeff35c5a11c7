"""Prediction files (detections, proposals) and ground truth for the evaluators, as `Segments`.

Prediction layouts, detected from the content:
- official ActivityNet: `{"results": {vid: [{"label", "score", "segment": [s, e]}]}, ...}`
  (proposal files may omit `label`);
- ActionFormer flat: `{"video-id": [...], "t-start": [...], "t-end": [...], "label": [...],
  "score": [...]}` (its `eval_results.pkl`, or the same as JSON); labels may be class ids;
- per-video arrays: `{vid: {"segments": [[s, e], ...], "scores": [...], "labels": [...]}}`, also
  under a top-level `"results"` key; labels may be class ids (`label_id`s of the annotations).
Integer labels are turned into names with the annotations' `label_id`s (`Annotations.label_index`).

Files are opened through `sola.core.safe_load` (pickles: NumPy arrays, dicts, lists and scalars only;
JSON: bounded nesting), and a file naming one video under two ids (`X` and `v_X`, or `X.mp4`) is refused
rather than merged.
"""

from __future__ import annotations

import gc
import os
from operator import itemgetter
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sola.core.errors import PredictionError
from sola.core.inputs import input_file
from sola.core.safe_load import load_pickle, parse_json
from sola.data.annotations.model import aliased_ids, video_key
from sola.evaluate.metrics.segments import Segments

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
    data = load_prediction_file(path)
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
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise PredictionError(
            f"{path}: malformed predictions ({type(exc).__name__}: {exc}); each prediction needs a "
            "segment [start, end] in seconds, a score and (for detections) a label"
        ) from None
    video, start, end, label, score = segments
    label = prediction_labels(label, label_names, path, require_labels)
    found = Segments.build(video, start, end, label, score, where=str(path), allow_reversed=True)
    check_one_id_per_video(distinct(found.video), str(path))
    return found


def load_prediction_file(path: str | os.PathLike) -> Any:
    """The raw content of a prediction file: JSON, or a pickle of NumPy arrays, dicts, lists and scalars
    only (ActionFormer's `eval_results.pkl`). Raises `PredictionError` (`UnsafePickleError` for a pickle
    that asks for anything else) naming the file."""
    path = input_file(path, "prediction file", PredictionError)
    # A prediction file is hundreds of thousands of small objects and no cycles: the cyclic
    # garbage collector would rescan them again and again while they are built.
    collecting = gc.isenabled()
    gc.disable()
    try:
        if path.suffix.lower() in (".pkl", ".pickle"):
            return load_pickle(path, PredictionError, "; save predictions as JSON, or pickle plain arrays and lists")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PredictionError(f"prediction file {path}: cannot read ({exc.strerror or exc})") from None
        return parse_json(data, str(path), PredictionError)
    finally:
        if collecting:
            gc.enable()


def check_one_id_per_video(video_ids, where: str) -> None:
    """Refuse two ids naming one video (`X` and `v_X`, `X.mp4`): matched to the ground truth they would be
    merged into one video. Raises `PredictionError` naming both ids."""
    pair = aliased_ids(video_ids)
    if pair:
        raise PredictionError(
            f"{where}: video ids {pair[0]!r} and {pair[1]!r} name the same video (ids match with or without "
            "'v_' and a file extension); keep one id per video, or their predictions would be merged"
        )


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


def prediction_labels(labels: list, label_names: Mapping[int, str] | None, path: str | os.PathLike,
                      require_labels: bool = True) -> list[str]:
    """Label strings; integer class ids go through `label_names`. Raises `PredictionError` for labels that
    mix class ids and names, or are neither (a float, a list, true/false)."""
    if not labels:
        return []
    kinds = set(map(type, labels))
    ids = {kind for kind in kinds if issubclass(kind, (int, np.integer)) and not issubclass(kind, (bool, np.bool_))}
    text_kinds = {kind for kind in kinds if issubclass(kind, str)}
    other = kinds - ids - text_kinds - {type(None)}
    if other or (ids and (text_kinds or type(None) in kinds)):
        odd = next(x for x in labels if type(x) in other) if other else next(x for x in labels if type(x) in ids)
        kind = "neither a class name nor an integer class id" if other else \
            "a class id among class names (or missing labels)"
        raise PredictionError(
            f"{path}: label {odd!r} ({type(odd).__name__}) is {kind}; give every prediction a class name "
            "(string) or every prediction an integer class id"
        )
    if ids:
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
    if kinds == {str}:
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
        bare.setdefault(video_key(vid), vid)
    renames = {v: bare[video_key(v)] for v in distinct(predictions.video) if v not in known and video_key(v) in bare}
    if not renames:
        return predictions
    video = np.array([renames.get(v, v) for v in predictions.video.tolist()], dtype=str)
    return Segments(video, predictions.start, predictions.end, predictions.label, predictions.score)
