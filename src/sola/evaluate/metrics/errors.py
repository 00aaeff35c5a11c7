"""False-positive analysis of DETAD (Alwassel et al., "Diagnosing Error in Temporal Action Detectors",
ECCV 2018): what the top-ranked false positives are, and how much average-mAP each kind costs.

The rules, as in DETAD's `src/action_detector_diagnosis.py` (`_limit_prediction`,
`analyze_fp_error_types`, `diagnose`) and `src/false_positive_analysis.py`:
- only each class's top k*G predictions by score are analysed, G being the number of ground-truth
  instances of that class (k = `limit_factor` = 10); classes without ground truth keep none;
- at each tIoU threshold the predictions are matched as the ActivityNet evaluator does
  (`match_predictions`); a matched one is a true positive;
- an unmatched prediction is compared with every ground truth of its video, whatever its label;
  with the one of highest tIoU (the first listed on ties) it is, in this order:
  tIoU >= threshold: *double detection* if that ground truth has its label, else *wrong label*;
  `low_tiou` (0.1) <= tIoU < threshold: *localization* (same label), else *confusion*;
  otherwise, or in a video without ground truth: *background*;
- counts are taken at every threshold; DETAD's breakdown is their mean over thresholds;
- the false-positive profile: predictions ranked [(i - 1) G, i G) within their class form bin i;
- the mAP gain of an error type: at each threshold, remove the predictions of that type at that
  threshold, re-evaluate, and subtract the average-mAP of the analysed predictions. Removing false
  positives leaves the matching of the others unchanged (a false positive never held a ground
  truth), so re-evaluating with `evaluate_detection` is DETAD's rule exactly.

Where we differ: AP is the ActivityNet AP of `evaluate_detection` (DETAD's script plots the
normalised AP_N, `normalize_ap=True`); zero-length ground truth is kept as `evaluate_detection`
keeps it (DETAD drops it); ties in score keep input order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sola.core.errors import ConfigError, PredictionError
from sola.evaluate.metrics.detection import evaluate_detection, match_predictions
from sola.evaluate.metrics.segments import ACTIVITYNET_TIOU, Segments, segment_iou

ERROR_TYPES = ("double detection", "wrong label", "localization", "confusion", "background")
CATEGORIES = ("true positive",) + ERROR_TYPES  # code i of `category_codes` is CATEGORIES[i]
LOW_TIOU = 0.1  # DETAD's `min_tiou_thr`: below it a false positive is background
TOP_K = 10  # DETAD's `limit_factor`: each class's top 10 G predictions are analysed


@dataclass
class FalsePositiveAnalysis:
    """DETAD's false-positive breakdown of the top k*G predictions and the mAP gain per error type."""

    tiou_thresholds: np.ndarray  # (T,)
    top_k: int  # the k of top-kG
    fractions: dict[str, float]  # error type -> share of the analysed false positives (sums to 1 if any)
    counts: dict[str, int]  # error type -> false positives of that type, summed over the T thresholds
    map_gain: dict[str, float]  # error type -> average-mAP gained by removing that type (fraction, not %)
    average_mAP: float  # noqa: N815  of the analysed (top k*G) predictions: the baseline of map_gain
    category_counts: np.ndarray  # (T, 6) predictions per threshold and category (CATEGORIES order)
    profile: np.ndarray  # (top_k, 6) share of each category in rank bin i (i*G..(i+1)*G), mean over T
    num_predictions: int  # predictions analysed (the top k*G of each class)
    low_tiou: float = LOW_TIOU

    def to_dict(self) -> dict:
        """JSON-ready: every field, `category_counts` per threshold and `profile` per bin ("1G", ...)."""
        return {
            "tiou_thresholds": [float(x) for x in self.tiou_thresholds],
            "top_k": int(self.top_k),
            "low_tiou": float(self.low_tiou),
            "num_predictions": int(self.num_predictions),
            "average_mAP": float(self.average_mAP),
            "fractions": {name: float(v) for name, v in self.fractions.items()},
            "counts": {name: int(v) for name, v in self.counts.items()},
            "map_gain": {name: float(v) for name, v in self.map_gain.items()},
            "category_counts": [
                {"tiou": float(t), **{name: int(n) for name, n in zip(CATEGORIES, row)}}
                for t, row in zip(self.tiou_thresholds, self.category_counts)
            ],
            "profile": {
                f"{i + 1}G": {name: float(s) for name, s in zip(CATEGORIES, row)} for i, row in enumerate(self.profile)
            },
        }


def false_positive_analysis(
    ground_truth: Segments, predictions: Segments, tiou_thresholds=ACTIVITYNET_TIOU, top_k: int = TOP_K,
    low_tiou: float = LOW_TIOU,
) -> FalsePositiveAnalysis:
    """DETAD's false-positive analysis of `predictions` (with scores) against `ground_truth`.

    Analyses each class's top `top_k` * G predictions (G: its ground-truth instances) at every
    threshold of `tiou_thresholds` (T,); see the module docstring for the rules. Runs
    `evaluate_detection` once plus once per (error type, threshold) that has predictions of that type.
    A `top_k` beyond the last non-empty rank bin (and beyond DETAD's 10) analyses the same predictions
    and is cut there, so `profile` never holds more bins than the predictions fill (`top_k` of the
    result says which). Raises `PredictionError` for empty ground truth or predictions without scores,
    `ConfigError` for `top_k` < 1.
    """
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if int(top_k) != top_k or top_k < 1:
        raise ConfigError(f"top_k must be a positive integer (DETAD uses 10), got {top_k!r}")
    _check(ground_truth, predictions)
    rank, instances = _class_rank(ground_truth, predictions)
    counted = instances > 0
    filled = int((rank[counted] // instances[counted]).max()) + 1 if counted.any() else 1  # bins with predictions
    top_k = min(int(top_k), max(filled, TOP_K))
    keep = rank < top_k * instances
    analysed = predictions.select(keep)
    rank_bin = rank[keep] // np.maximum(instances[keep], 1)  # (A,) in 0..top_k-1
    codes = category_codes(ground_truth, analysed, thresholds, low_tiou)  # (T, A)
    num_thr, num_cat = len(thresholds), len(CATEGORIES)

    per_threshold = np.bincount((codes + num_cat * np.arange(num_thr)[:, None]).ravel(),
                                minlength=num_thr * num_cat).reshape(num_thr, num_cat)
    totals = per_threshold[:, 1:].sum(axis=0)  # (5,)
    fp_total = int(totals.sum())
    in_bin = np.bincount((rank_bin * num_cat + codes).ravel(), minlength=top_k * num_cat).reshape(top_k, num_cat)
    bin_size = np.bincount(rank_bin, minlength=top_k)
    profile = in_bin / np.maximum(num_thr * bin_size, 1)[:, None]  # empty bins: all 0

    baseline = evaluate_detection(ground_truth, analysed, thresholds)
    gain = {}
    for code, name in enumerate(ERROR_TYPES, start=1):
        mAP = baseline.mAP.copy()  # noqa: N806
        for t in range(num_thr):
            removed = codes[t] == code
            if removed.any():
                mAP[t] = evaluate_detection(ground_truth, analysed.select(~removed), thresholds[t : t + 1]).mAP[0]
        gain[name] = float(mAP.mean() - baseline.average_mAP)
    return FalsePositiveAnalysis(
        tiou_thresholds=thresholds,
        top_k=top_k,
        fractions={name: (float(n) / fp_total if fp_total else 0.0) for name, n in zip(ERROR_TYPES, totals)},
        counts={name: int(n) for name, n in zip(ERROR_TYPES, totals)},
        map_gain=gain,
        average_mAP=baseline.average_mAP,
        category_counts=per_threshold,
        profile=profile,
        num_predictions=len(analysed),
        low_tiou=float(low_tiou),
    )


def classify_predictions(ground_truth: Segments, predictions: Segments, tiou: float,
                         low_tiou: float = LOW_TIOU) -> np.ndarray:
    """The DETAD category (a `CATEGORIES` name) of each prediction at one tIoU threshold, (P,) str.

    All the given predictions are matched and classified (no top-kG cut: `false_positive_analysis`
    cuts first). Labels absent from the ground truth are never true positives. Raises
    `PredictionError` for empty ground truth or predictions without scores.
    """
    _check(ground_truth, predictions)
    codes = category_codes(ground_truth, predictions, [float(tiou)], low_tiou)[0]
    return np.asarray(CATEGORIES)[codes]


def category_codes(ground_truth: Segments, predictions: Segments, tiou_thresholds,
                   low_tiou: float = LOW_TIOU) -> np.ndarray:
    """(T, P) int8 category codes (index into `CATEGORIES`) of each prediction at each threshold.

    Raises `PredictionError` for predictions without scores.
    """
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if len(predictions) and predictions.score is None:
        raise PredictionError("detections need a score per segment")
    codes = np.full((len(thresholds), len(predictions)), CATEGORIES.index("background"), dtype=np.int8)
    if len(predictions) == 0:
        return codes
    gt_class, pred_class = _class_codes(ground_truth.label, predictions.label)
    gt_video, pred_video = _video_codes(ground_truth.video, predictions.video)

    # Best ground truth of the video, whatever its label: its tIoU and whether it shares the label.
    best_tiou, best_gt = _best_overlap(gt_video, ground_truth.start, ground_truth.end,
                                       pred_video, predictions.start, predictions.end)
    has_overlap = best_gt >= 0
    same_label = np.zeros(len(predictions), dtype=bool)
    same_label[has_overlap] = gt_class[best_gt[has_overlap]] == pred_class[has_overlap]
    high = best_tiou[None, :] >= thresholds[:, None]  # (T, P)
    low = (best_tiou >= low_tiou) & has_overlap  # (P,)
    codes[high & same_label] = CATEGORIES.index("double detection")
    codes[high & ~same_label] = CATEGORIES.index("wrong label")
    codes[~high & (low & same_label)] = CATEGORIES.index("localization")
    codes[~high & (low & ~same_label)] = CATEGORIES.index("confusion")
    codes[high & ~has_overlap] = CATEGORIES.index("background")  # only when a threshold is <= 0
    matched = _matched(predictions, pred_class, pred_video, ground_truth, gt_class, gt_video, thresholds)
    codes[matched] = CATEGORIES.index("true positive")
    return codes


def true_positive_flags(ground_truth: Segments, predictions: Segments, tiou_thresholds) -> np.ndarray:
    """(T, P) bool: prediction p (input order) is a true positive at threshold t, by `evaluate_detection`'s rule.

    Raises `PredictionError` for predictions without scores.
    """
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if len(predictions) and predictions.score is None:
        raise PredictionError("detections need a score per segment")
    gt_class, pred_class = _class_codes(ground_truth.label, predictions.label)
    gt_video, pred_video = _video_codes(ground_truth.video, predictions.video)
    return _matched(predictions, pred_class, pred_video, ground_truth, gt_class, gt_video, thresholds)


def _matched(predictions, pred_class, pred_video, ground_truth, gt_class, gt_video, thresholds) -> np.ndarray:
    """`match_predictions` in the evaluator's priority (per class, decreasing score, ties in input order),
    returned in input order, (T, P)."""
    if len(predictions) == 0 or len(ground_truth) == 0:
        return np.zeros((len(thresholds), len(predictions)), dtype=bool)
    order = np.lexsort((-predictions.score, pred_class))
    matched = match_predictions(pred_class[order], pred_video[order], predictions.start[order], predictions.end[order],
                                gt_class, gt_video, ground_truth.start, ground_truth.end, thresholds)
    flags = np.empty_like(matched)
    flags[:, order] = matched
    return flags


def _check(ground_truth: Segments, predictions: Segments) -> None:
    if len(ground_truth) == 0:
        raise PredictionError("the ground truth holds no segments for this subset; check --subset")
    if predictions.score is None:
        raise PredictionError("detections need a score per segment")


def _class_rank(ground_truth: Segments, predictions: Segments) -> tuple[np.ndarray, np.ndarray]:
    """Each prediction's rank (0 = best score) within its class and its class's ground-truth count, (P,) each."""
    gt_class, pred_class = _class_codes(ground_truth.label, predictions.label)
    instances = np.bincount(gt_class, minlength=int(pred_class.max(initial=0)) + 1)[pred_class]
    order = np.lexsort((-predictions.score, pred_class))  # stable: ties keep input order, as pandas nlargest
    sorted_class = pred_class[order]
    rank = np.empty(len(predictions), dtype=np.int64)
    rank[order] = np.arange(len(order)) - np.searchsorted(sorted_class, sorted_class, side="left")
    return rank, instances


def _class_codes(gt_label: np.ndarray, pred_label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer class codes; a predicted label absent from the ground truth gets a code of its own (K)."""
    classes, gt_class = np.unique(gt_label, return_inverse=True)
    position = np.minimum(np.searchsorted(classes, pred_label), len(classes) - 1)
    pred_class = np.where(classes[position] == pred_label, position, len(classes))
    return gt_class.astype(np.int64), pred_class.astype(np.int64)


def _video_codes(gt_video: np.ndarray, pred_video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, codes = np.unique(np.concatenate([gt_video, pred_video]), return_inverse=True)
    codes = codes.astype(np.int64).reshape(-1)
    return codes[: len(gt_video)], codes[len(gt_video):]


def _best_overlap(gt_video, gt_start, gt_end, pred_video, pred_start, pred_end) -> tuple[np.ndarray, np.ndarray]:
    """Per prediction, the highest tIoU with a ground truth of its video and that ground truth's index
    (the first listed on ties; -1 and tIoU 0 in a video without ground truth), (P,) each."""
    num_pred = len(pred_video)
    best_tiou = np.zeros(num_pred)
    best_gt = np.full(num_pred, -1, dtype=np.int64)
    gt_order = np.argsort(gt_video, kind="stable")  # file order inside a video survives
    sorted_video = gt_video[gt_order]
    first = np.searchsorted(sorted_video, pred_video, side="left")
    count = np.searchsorted(sorted_video, pred_video, side="right") - first
    if not count.any():
        return best_tiou, best_gt
    # Every (prediction, ground truth of its video) pair, grouped by prediction: (M,) arrays.
    pair_pred = np.repeat(np.arange(num_pred), count)
    run_start = np.cumsum(count) - count
    pair_gt = gt_order[first[pair_pred] + np.arange(len(pair_pred)) - run_start[pair_pred]]
    tiou = segment_iou(pred_start[pair_pred], pred_end[pair_pred], gt_start[pair_gt], gt_end[pair_gt])
    has = count > 0
    best_tiou[has] = np.maximum.reduceat(tiou, run_start[has])
    # The first pair reaching its prediction's maximum: DETAD's `argmax`.
    at_max = np.flatnonzero(tiou == best_tiou[pair_pred])
    owners, first_at_max = np.unique(pair_pred[at_max], return_index=True)
    best_gt[owners] = pair_gt[at_max[first_at_max]]
    return best_tiou, best_gt
