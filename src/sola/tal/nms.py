"""Non-maximum suppression of 1-D segments: Gaussian Soft-NMS, hard NMS, and score voting.

Segments are `(N, 2)` [start, end] arrays in any one unit (the head uses snippets). Soft-NMS is
sequential by nature (each pick decays the rest); every step is vectorised over the candidates.
"""

from __future__ import annotations

import numpy as np

from sola.evaluate.metrics.segments import segment_iou


def suppress_one_class(segments: np.ndarray, scores: np.ndarray, method: str = "soft", sigma: float = 0.5,
                       iou_threshold: float = 0.1, min_score: float = 0.001,
                       max_keep: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Soft (Gaussian), hard or no NMS of one class; returns kept indices (K,) and their scores (K,).

    soft: repeatedly pick the highest score, then multiply every remaining score by
    exp(-iou^2 / sigma) and drop those below `min_score`. hard: drop those with iou > iou_threshold.
    Picks come out in order of decreasing score. `max_keep` stops after that many picks: the picked
    scores never increase, so later picks could not enter a top-`max_keep` list anyway.
    """
    alive = np.where(scores >= min_score, scores, -np.inf).astype(np.float64)
    limit = len(scores) if max_keep is None else min(max_keep, len(scores))
    if method == "none":
        order = np.argsort(-alive, kind="stable")[:limit]
        order = order[np.isfinite(alive[order])]
        return order, alive[order]
    # Only the live candidates are carried from pick to pick (in index order, so that ties go to the lowest index
    # as np.argmax over all of them would): the same picks and scores, in less work as candidates die.
    index = np.nonzero(np.isfinite(alive))[0]
    alive, starts, ends = alive[index], segments[index, 0], segments[index, 1]
    kept, kept_scores = [], []
    while len(kept) < limit and len(index):
        best = int(np.argmax(alive))
        kept.append(int(index[best]))
        kept_scores.append(alive[best])
        iou = segment_iou(starts[best], ends[best], starts, ends)
        if method == "soft":
            alive = alive * np.exp(-(iou * iou) / sigma)
            live = ~(alive < min_score)
        else:
            live = ~(iou > iou_threshold)
        live[best] = False
        index, alive, starts, ends = index[live], alive[live], starts[live], ends[live]
    return np.asarray(kept, dtype=np.int64), np.asarray(kept_scores, dtype=np.float64)


def batched_nms(segments: np.ndarray, scores: np.ndarray, labels: np.ndarray, method: str = "soft",
                sigma: float = 0.5, iou_threshold: float = 0.1, min_score: float = 0.001, max_seg_num: int = 200,
                multiclass: bool = True, voting_thresh: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NMS per class (or over all classes), then the `max_seg_num` best, then optional score voting.

    segments (N, 2), scores (N,), labels (N,). Returns segments (K, 2), scores (K,), labels (K,)
    sorted by decreasing score. Score voting replaces each kept segment by the average of the
    input segments overlapping it with IoU >= voting_thresh, weighted by score * IoU.
    """
    if len(scores) == 0:
        return segments.reshape(0, 2), scores.reshape(0), labels.reshape(0)
    groups = np.unique(labels) if multiclass else [None]
    kept_index, kept_score = [], []
    for group in groups:
        members = np.nonzero(labels == group)[0] if group is not None else np.arange(len(scores))
        index, score = suppress_one_class(segments[members], scores[members], method, sigma, iou_threshold,
                                          min_score, max_seg_num)
        kept_index.append(members[index])
        kept_score.append(score)
    index, score = np.concatenate(kept_index), np.concatenate(kept_score)
    order = np.argsort(-score, kind="stable")[:max_seg_num]
    index, score = index[order], score[order]
    kept_segments = segments[index].astype(np.float64)
    if voting_thresh > 0 and len(index):
        iou = segment_iou(kept_segments[:, None, 0], kept_segments[:, None, 1],
                          segments[None, :, 0], segments[None, :, 1])  # (K, N)
        weights = (iou >= voting_thresh) * scores[None, :] * iou
        kept_segments = (weights @ segments) / np.maximum(weights.sum(1, keepdims=True), 1e-12)
    return kept_segments, score, labels[index]
