"""Non-maximum suppression of 1-D segments: Gaussian Soft-NMS, hard NMS, and score voting.

Segments are `(N, 2)` [start, end] arrays in any one unit (the head uses snippets). Soft-NMS is
sequential by nature (each pick decays the rest); every step is vectorised over the candidates and over the
classes of a video (`suppress_rows`), and candidates dead in every class are dropped as the picks go.
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
    limit = len(scores) if max_keep is None else min(max_keep, len(scores))
    return suppress_rows([segments], [scores], method, sigma, iou_threshold, min_score, limit)[0]


def suppress_rows(segments: list[np.ndarray], scores: list[np.ndarray], method: str = "soft", sigma: float = 0.5,
                  iou_threshold: float = 0.1, min_score: float = 0.001, max_keep: int | None = None,
                  overall: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """`suppress_one_class` of several independent groups (the classes of a video) at once: one pick per group and
    step on a (groups, candidates) matrix padded with dead entries, so the steps are as many as the picks of the
    largest group, not their sum. Per group: kept indices into its arrays and their scores, as
    `suppress_one_class` gives them (the same arithmetic per entry; ties go to the lowest index).

    `overall`: only the `overall` best picks of all groups together are wanted (`batched_nms`); the steps stop once
    that many picks score above every live candidate (scores only decay, so no later pick could enter), and each
    group's list may then be shorter than alone, never different within those best picks."""
    count = len(scores)
    width = max((len(row) for row in scores), default=0)
    alive = np.full((count, width), -np.inf)
    starts, ends = np.zeros((count, width)), np.zeros((count, width))
    for g, (row_segments, row_scores) in enumerate(zip(segments, scores)):
        n = len(row_scores)
        alive[g, :n] = np.where(row_scores >= min_score, row_scores, -np.inf)
        starts[g, :n], ends[g, :n] = row_segments[:, 0], row_segments[:, 1]
    limit = width if max_keep is None else min(max_keep, width)
    if method == "none":
        order = np.argsort(-alive, axis=1, kind="stable")[:, :limit]
        return [(o[np.isfinite(a[o])], a[o[np.isfinite(a[o])]]) for o, a in zip(order, alive)]
    picks, values = np.zeros((count, limit), dtype=np.int64), np.zeros((count, limit))
    taken = np.zeros(count, dtype=np.int64)
    rows = np.arange(count)
    columns = np.arange(width)  # original column of each carried one
    for step in range(limit):
        best = np.argmax(alive, axis=1)
        value = alive[rows, best]
        live_rows = np.isfinite(value)
        if not live_rows.any():
            break
        picks[live_rows, step] = columns[best[live_rows]]
        values[live_rows, step] = value[live_rows]
        taken[live_rows] += 1
        alive[rows, best] = -np.inf
        iou = segment_iou(starts[rows, best][:, None], ends[rows, best][:, None], starts, ends)  # (groups, width)
        if method == "soft":
            with np.errstate(invalid="ignore"):  # -inf * 0: NaN, made dead below
                alive = alive * np.exp(-(iou * iou) / sigma)
            alive[~(alive >= min_score)] = -np.inf  # also -inf * 0 (a tiny sigma underflows exp): NaN, dead
        else:
            alive[iou > iou_threshold] = -np.inf
        if overall is not None and step % 8 == 7 and taken.sum() >= overall:
            made = values[:, : step + 1][np.arange(step + 1)[None, :] < taken[:, None]]
            if np.max(alive) < np.partition(made, len(made) - overall)[len(made) - overall]:
                break  # (an all-dead matrix gives -inf: stop too)
        carried = np.isfinite(alive).any(axis=0)  # drop the columns dead in every group
        if not carried.all():
            alive, starts, ends, columns = alive[:, carried], starts[:, carried], ends[:, carried], columns[carried]
            if not alive.shape[1]:
                break
    return [(picks[g, :taken[g]], values[g, :taken[g]]) for g in range(count)]


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
    members = [np.nonzero(labels == group)[0] if group is not None else np.arange(len(scores)) for group in groups]
    kept = suppress_rows([segments[m] for m in members], [scores[m] for m in members], method, sigma, iou_threshold,
                         min_score, max_seg_num, overall=max_seg_num)
    index = np.concatenate([m[picked] for m, (picked, _) in zip(members, kept)])
    score = np.concatenate([value for _, value in kept])
    order = np.argsort(-score, kind="stable")[:max_seg_num]
    index, score = index[order], score[order]
    kept_segments = segments[index].astype(np.float64)
    if voting_thresh > 0 and len(index):
        iou = segment_iou(kept_segments[:, None, 0], kept_segments[:, None, 1],
                          segments[None, :, 0], segments[None, :, 1])  # (K, N)
        weights = (iou >= voting_thresh) * scores[None, :] * iou
        kept_segments = (weights @ segments) / np.maximum(weights.sum(1, keepdims=True), 1e-12)
    return kept_segments, score, labels[index]
