"""A plain-loop detection AP, one prediction at a time: the yardstick for the vectorised code.

It spells out the official matching rule as directly as possible (same choices for ties, unknown
labels and zero-length segments as `sola.evaluate.metrics.detection`). Tests compare the two on random
cases; `benchmarks/eval_detection.py` times it as the naive baseline. Not for real use: it is slow.
"""

from __future__ import annotations

import numpy as np

from sola.evaluate.metrics.detection import interpolated_average_precision
from sola.evaluate.metrics.segments import ACTIVITYNET_TIOU, Segments, segment_iou


def reference_average_precision(
    ground_truth: Segments, predictions: Segments, tiou_thresholds=ACTIVITYNET_TIOU
) -> tuple[list[str], np.ndarray]:
    """Class names (first appearance order) and AP (T, K), computed with Python loops."""
    thresholds = [float(t) for t in tiou_thresholds]
    classes: list[str] = []
    for label in ground_truth.label:
        if label not in classes:
            classes.append(str(label))
    ap = np.zeros((len(thresholds), len(classes)))
    for k, name in enumerate(classes):
        gt_rows = [i for i in range(len(ground_truth)) if ground_truth.label[i] == name]
        gt_by_video: dict[str, list[int]] = {}
        for i in gt_rows:
            gt_by_video.setdefault(str(ground_truth.video[i]), []).append(i)
        pred_rows = [i for i in range(len(predictions)) if predictions.label[i] == name]
        pred_rows.sort(key=lambda i: -predictions.score[i])  # stable: ties keep input order
        taken = [set() for _ in thresholds]
        true_positive = np.zeros((len(thresholds), len(pred_rows)))
        for rank, i in enumerate(pred_rows):
            candidates = gt_by_video.get(str(predictions.video[i]), [])
            scored = []
            for position, j in enumerate(candidates):
                iou = float(
                    segment_iou(predictions.start[i], predictions.end[i], ground_truth.start[j], ground_truth.end[j])
                )
                scored.append((iou, position, j))
            scored.sort(reverse=True)  # highest tIoU first; ties: the later ground truth first
            for t, threshold in enumerate(thresholds):
                for iou, _, j in scored:
                    if iou < threshold:
                        break
                    if j in taken[t]:
                        continue
                    taken[t].add(j)
                    true_positive[t, rank] = 1
                    break
        ap[:, k] = interpolated_average_precision(true_positive, len(gt_rows))
    return classes, ap
