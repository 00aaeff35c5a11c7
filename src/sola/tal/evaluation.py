"""Scoring a TAL head's predictions: ActivityNet-format predictions against annotations.

Apart from `sola.tal.experiment` so that `sola tal eval` scores a prediction file without importing torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sola.core.errors import PredictionError
from sola.data.predictions import check_one_id_per_video, distinct, ground_truth_segments, prediction_labels
from sola.evaluate.metrics import Segments, evaluate_detection
from sola.evaluate.metrics.coverage import NO_PREDICTIONS, cover

AGNOSTIC_LABEL = "action"  # the one class of a class-agnostic head


def evaluate_predictions(predictions: dict[str, Any], annotations, subset: str, tiou_thresholds,
                         class_agnostic: bool = False, where: str = "tal predictions", covered_only: bool = False,
                         covered=None, why: str = NO_PREDICTIONS):
    """Detection mAP of ActivityNet-format predictions against `subset`; returns `DetectionResult` with its
    `coverage`.

    The videos covered are `covered` (default: the keys of `predictions["results"]`, also those with an empty
    list); with `covered_only` only those are scored (`why` says why the others are not covered), otherwise
    every ground-truth video of `subset` counts, as in the official evaluator.

    With `class_agnostic`, ground-truth and predicted labels are all replaced by "action" (proposal
    evaluation through the detection metric), which is how the single-class head is scored without class
    scores; a prediction file that carries real labels (another head's, a fused one) is scored the same way.
    Raises `PredictionError` naming `where` for malformed predictions.
    """
    truth = ground_truth_segments(annotations, subset)
    names = {index: name for name, index in annotations.label_index().items()}
    found = prediction_segments(predictions, where, names)
    truth, coverage = cover(truth, predictions["results"] if covered is None else covered, subset, covered_only, why)
    if class_agnostic:
        truth, found = _one_label(truth), _one_label(found)
    result = evaluate_detection(truth, found, np.asarray(tiou_thresholds, dtype=np.float64))
    result.coverage = coverage
    return result


def _one_label(segments: Segments) -> Segments:
    labels = np.full(len(segments.video), AGNOSTIC_LABEL)
    return Segments(segments.video, segments.start, segments.end, labels, segments.score)


def prediction_segments(predictions: dict[str, Any], where: str = "tal predictions", label_names=None):
    """`Segments` of ActivityNet-format predictions `{"results": {video: [{segment, label, score}]}}`.

    Integer labels are class ids named by `label_names` (id -> name). Raises `PredictionError` naming
    `where` for malformed predictions, mixed labels and two ids of one video (`X`, `v_X`).
    """
    try:
        rows = [(vid, p["segment"][0], p["segment"][1], p["label"], p["score"])
                for vid, preds in predictions["results"].items() for p in preds]
    except (KeyError, TypeError, IndexError, AttributeError) as exc:
        raise PredictionError(
            f"{where}: malformed prediction ({type(exc).__name__}: {exc}); each needs a segment "
            "[start, end] in seconds, a label and a score (as `sola tal infer` writes them)"
        ) from None
    video, start, end, label, score = (list(x) for x in zip(*rows)) if rows else ([], [], [], [], [])
    label = prediction_labels(label, label_names, where)
    found = Segments.build(video, start, end, label, score, where=where, allow_reversed=True)
    check_one_id_per_video(distinct(found.video), where)
    return found
