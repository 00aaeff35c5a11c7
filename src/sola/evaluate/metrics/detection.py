"""Detection mAP with the semantics of the official ActivityNet evaluator, vectorised.

The rule (`Evaluation/eval_detection.py` of activitynet/ActivityNet): per class, predictions are
taken in decreasing score; at each tIoU threshold a prediction is a true positive if it finds an
unmatched ground truth of the same video and class with tIoU >= threshold, trying ground truths from
the highest tIoU down (so it falls back to the next-best one when the best is taken); otherwise a
false positive. AP is the all-point interpolated area under precision/recall; mAP averages the
classes of the ground truth (a class without predictions scores 0).

Choices where the official code is undefined or crashes (documented, tested):
- ties in score keep input order (stable sort), so the result does not depend on a sort algorithm;
- ties in tIoU between ground truths go to the later-listed one (what the official
  `argsort()[::-1]` does);
- predictions whose label is absent from the ground truth are dropped with a warning (the official
  code raises KeyError);
- a zero-length segment has tIoU 0 with another zero-length one (the official code gives NaN).

The greedy matching is serial dictatorship: every ground truth prefers the earlier prediction and
each prediction prefers ground truths by tIoU. With one common priority order, the deferred
acceptance rounds below reach the same matching as the sequential loop, but each round is a few
array operations over every prediction and threshold at once.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np

from sola.core.errors import PredictionError
from sola.evaluate.metrics.coverage import Coverage
from sola.evaluate.metrics.segments import ACTIVITYNET_TIOU, Segments, segment_iou


@dataclass
class DetectionResult:
    """AP per threshold and class, mAP per threshold and their average; `to_dict()` for JSON."""

    tiou_thresholds: np.ndarray  # (T,)
    classes: list[str]  # (K,) in order of first appearance in the ground truth
    ap: np.ndarray  # (T, K)
    num_ground_truth: np.ndarray  # (K,)
    num_predictions: np.ndarray  # (K,)
    ignored_labels: dict[str, int] = field(default_factory=dict)  # unknown label -> predictions dropped
    coverage: Coverage | None = None  # which ground-truth videos it was scored on, where the caller knows

    @property
    def mAP(self) -> np.ndarray:  # noqa: N802 (the name everyone uses)
        """(T,) mean AP over classes at each threshold."""
        return self.ap.mean(axis=1)

    @property
    def average_mAP(self) -> float:  # noqa: N802
        """The mean of `mAP` over thresholds."""
        return float(self.mAP.mean())

    def to_dict(self) -> dict:
        """`{"tiou_thresholds", "mAP", "average_mAP", "per_class": {label: {...}}, "ignored_labels"}` (and
        "coverage" where known)."""
        per_class = {
            name: {
                "AP": [float(x) for x in self.ap[:, k]],
                "average_AP": float(self.ap[:, k].mean()),
                "num_ground_truth": int(self.num_ground_truth[k]),
                "num_predictions": int(self.num_predictions[k]),
            }
            for k, name in enumerate(self.classes)
        }
        return {
            "tiou_thresholds": [float(x) for x in self.tiou_thresholds],
            "mAP": [float(x) for x in self.mAP],
            "average_mAP": self.average_mAP,
            "per_class": per_class,
            "ignored_labels": dict(self.ignored_labels),
            **({"coverage": self.coverage.to_dict()} if self.coverage is not None else {}),
        }


def evaluate_detection(
    ground_truth: Segments, predictions: Segments, tiou_thresholds=ACTIVITYNET_TIOU
) -> DetectionResult:
    """ActivityNet detection mAP of `predictions` (with scores) against `ground_truth`.

    `ground_truth` holds only the evaluated subset; predictions on other videos are false positives.
    Returns a `DetectionResult` (AP of shape (T, K)). Raises `PredictionError` if the ground truth is
    empty or the predictions carry no scores. Warns (`UserWarning`) about dropped unknown labels.
    """
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if len(ground_truth) == 0:
        raise PredictionError("the ground truth holds no segments for this subset; check --subset")
    if predictions.score is None:
        raise PredictionError("detections need a score per segment")
    classes, gt_class = _first_appearance_codes(ground_truth.label)
    num_classes = len(classes)

    class_index = {str(name): k for k, name in enumerate(classes)}
    pred_class = np.fromiter(
        map(class_index.get, predictions.label.tolist(), itertools.repeat(-1)), dtype=np.int64, count=len(predictions)
    )
    unknown = pred_class < 0
    ignored: dict[str, int] = {}
    if unknown.any():
        names, counts = np.unique(predictions.label[unknown], return_counts=True)
        ignored = {str(n): int(c) for n, c in zip(names, counts)}
        shown = ", ".join(f"{n!r} ({c})" for n, c in list(ignored.items())[:5])
        warnings.warn(
            f"ignored {int(unknown.sum())} predictions whose label is not in the ground truth: {shown}"
            + (" ..." if len(ignored) > 5 else ""),
            stacklevel=2,
        )
        predictions = predictions.select(~unknown)
        pred_class = pred_class[~unknown]

    # One integer per video over both sides (a dict is much faster than sorting strings).
    video_index: dict[str, int] = {}
    gt_video = _codes(ground_truth.video, video_index)
    pred_video = _codes(predictions.video, video_index)

    # Predictions in (class, decreasing score) order; lexsort is stable, so ties keep input order.
    order = np.lexsort((-predictions.score, pred_class))
    pred_class, pred_video = pred_class[order], pred_video[order]
    pred_start, pred_end = predictions.start[order], predictions.end[order]

    true_positive = match_predictions(
        pred_class, pred_video, pred_start, pred_end,
        gt_class, gt_video, ground_truth.start, ground_truth.end, thresholds,
    )  # (T, P), rows follow `order`

    num_gt = np.bincount(gt_class, minlength=num_classes)
    num_pred = np.bincount(pred_class, minlength=num_classes)
    bounds = np.concatenate([[0], np.cumsum(num_pred)])
    ap = np.zeros((len(thresholds), num_classes))
    for k in range(num_classes):
        ap[:, k] = interpolated_average_precision(true_positive[:, bounds[k] : bounds[k + 1]], num_gt[k])
    return DetectionResult(thresholds, [str(c) for c in classes], ap, num_gt, num_pred, ignored)


def match_predictions(
    pred_class, pred_video, pred_start, pred_end, gt_class, gt_video, gt_start, gt_end, thresholds
) -> np.ndarray:
    """True-positive flags (T, P) of predictions already in priority order (earlier wins).

    Classes and videos are integer codes; times are seconds. A prediction may only match a ground
    truth of its own class and video with tIoU >= threshold; see the module docstring for the rule.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    num_pred, num_thr = len(pred_class), len(thresholds)
    matched = np.zeros((num_thr, num_pred), dtype=bool)
    if num_pred == 0 or len(gt_class) == 0:
        return matched

    # Ground truth grouped by (class, video), stable so that file order survives inside a group.
    num_videos = int(max(gt_video.max(), pred_video.max())) + 1
    gt_key = gt_class.astype(np.int64) * num_videos + gt_video
    gt_order = np.argsort(gt_key, kind="stable")
    gt_key_sorted = gt_key[gt_order]
    pred_key = pred_class.astype(np.int64) * num_videos + pred_video
    first = np.searchsorted(gt_key_sorted, pred_key, side="left")
    count = np.searchsorted(gt_key_sorted, pred_key, side="right") - first

    # Every (prediction, candidate ground truth) pair: (M,) arrays.
    pair_pred = np.repeat(np.arange(num_pred), count)
    pair_start = np.concatenate([[0], np.cumsum(count)[:-1]])  # first pair of each prediction
    pair_gt = first[pair_pred] + (np.arange(len(pair_pred)) - pair_start[pair_pred])  # sorted-gt index
    tiou = segment_iou(pred_start[pair_pred], pred_end[pair_pred], gt_start[gt_order][pair_gt], gt_end[gt_order][pair_gt])

    # Each prediction's preference list: tIoU descending, ties to the later ground truth.
    pref = _preference_order(tiou, pair_start, count)
    pair_gt, tiou = pair_gt[pref], tiou[pref]
    # Acceptable candidates at threshold t are a prefix of that list: count them per threshold from
    # each pair's level (how many thresholds its tIoU reaches), in one bincount.
    thr_order = np.argsort(thresholds, kind="stable")
    level = np.searchsorted(thresholds[thr_order], tiou, side="right")  # (M,) in 0..T
    per_level = np.bincount(pair_pred * (num_thr + 1) + level, minlength=num_pred * (num_thr + 1))
    reaching = np.cumsum(per_level.reshape(num_pred, num_thr + 1)[:, ::-1], axis=1)[:, ::-1]  # (P, T+1)
    acceptable = np.empty((num_thr, num_pred), dtype=np.int64)
    acceptable[thr_order] = reaching[:, 1:].T  # pairs with level > t, i.e. tIoU >= sorted threshold t

    # Deferred acceptance, all thresholds at once, on flat (t, p) cells: cell = t * P + p.
    # holder[t * G + g] is the prediction holding ground truth g at threshold t.
    num_gt = len(gt_key)
    nobody = num_pred
    holder = np.full(num_thr * num_gt, nobody, dtype=np.int64)
    pointer = np.zeros(num_thr * num_pred, dtype=np.int64)
    acceptable = acceptable.ravel()
    taken = matched.ravel()  # a view: writing it fills `matched`
    cell = np.flatnonzero(acceptable > 0)
    while len(cell):
        thr_idx, pred_idx = np.divmod(cell, num_pred)
        slot = thr_idx * num_gt + pair_gt[pair_start[pred_idx] + pointer[cell]]
        best = holder.copy()
        np.minimum.at(best, slot, pred_idx)
        wins = best[slot] == pred_idx
        # Holders beaten by an earlier prediction lose their ground truth and move on.
        won_slot = slot[wins]
        beaten = holder[won_slot]
        has_holder = beaten != nobody
        beaten_cell = thr_idx[wins][has_holder] * num_pred + beaten[has_holder]
        holder[won_slot] = pred_idx[wins]
        taken[cell[wins]] = True
        taken[beaten_cell] = False
        # Losers and the beaten try their next candidate, while they have acceptable ones.
        again = np.concatenate([cell[~wins], beaten_cell])
        pointer[again] += 1
        cell = again[pointer[again] < acceptable[again]]
    return matched


def _preference_order(tiou: np.ndarray, pair_start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Permutation of the pairs sorting each prediction's run by tIoU descending, ties last-first.

    Runs are short, so rows of equal length are sorted together as a matrix (one loop step per
    distinct run length) instead of one global sort of all pairs.
    """
    order = np.arange(len(tiou))
    for length in np.unique(count[count > 1]):
        rows = pair_start[count == length][:, None] + np.arange(length - 1, -1, -1)  # (R, L) later first
        column = np.argsort(-tiou[rows], axis=1, kind="stable")
        order[rows[:, ::-1]] = np.take_along_axis(rows, column, axis=1)
    return order


def interpolated_average_precision(true_positive: np.ndarray, num_positives: int) -> np.ndarray:
    """All-point interpolated AP (T,) from true-positive flags (T, P) in decreasing score order.

    Precision is made monotone from the right and integrated over recall, as the official
    `interpolated_prec_rec`; no predictions gives 0. `num_positives` must be positive.
    """
    true_positive = np.asarray(true_positive, dtype=np.float64)
    num_thr, num_pred = true_positive.shape
    tp_cumsum = np.cumsum(true_positive, axis=1)
    precision = tp_cumsum / np.arange(1, num_pred + 1, dtype=np.float64)
    recall = tp_cumsum / float(num_positives)
    zeros, ones = np.zeros((num_thr, 1)), np.ones((num_thr, 1))
    precision = np.concatenate([zeros, precision, zeros], axis=1)
    recall = np.concatenate([zeros, recall, ones], axis=1)
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    return np.sum(np.diff(recall, axis=1) * envelope[:, 1:], axis=1)


def _codes(values: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """(N,) integer code of each string, extending `index` (string -> code) with new ones."""
    values = values.tolist()
    for value in dict.fromkeys(values):  # the distinct values, in order
        index.setdefault(value, len(index))
    return np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))


def _first_appearance_codes(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class names in order of first appearance and the (N,) code of each label."""
    names, first_index, codes = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.argsort(first_index)] = np.arange(len(names))
    return names[np.argsort(first_index)], rank[codes]
