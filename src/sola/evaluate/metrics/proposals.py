"""Proposal metric of BSN/BMN: average recall vs average number of proposals (AR@AN) and its AUC.

Semantics of the official `Evaluation/eval_proposal.py` (activitynet/ActivityNet), vectorised:
labels are ignored; per ground-truth video the proposals are ranked by score (stable: ties keep
input order) and the top `int(n * ratio)` kept, `ratio = max_avg * videos / all proposals`; a
ground truth counts as recalled at a budget when any kept proposal within the budget reaches the
tIoU threshold (no one-to-one matching). Budgets are 1%..100% of the kept proposals per video.
As in the official code, proposals on videos outside the ground truth count in `all proposals`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sola.core.errors import ConfigError, PredictionError
from sola.evaluate.metrics.segments import ACTIVITYNET_TIOU, Segments, segment_iou

MAX_BUDGET = 2.0**53  # proposals over all videos: counted exactly in float64 and int64 alike

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed trapz


@dataclass
class ProposalResult:
    """Recall (T, 100) per threshold and budget, its mean over thresholds, budgets and AUC."""

    tiou_thresholds: np.ndarray  # (T,)
    recall: np.ndarray  # (T, 100)
    average_recall: np.ndarray  # (100,)
    proposals_per_video: np.ndarray  # (100,) the AN axis
    auc: float  # area under AR vs AN divided by the largest AN (a fraction; BMN prints it x100)

    def recall_at(self, average_number: float) -> float:
        """AR at the budget closest to `average_number` proposals per video."""
        index = int(np.argmin(np.abs(self.proposals_per_video - average_number)))
        return float(self.average_recall[index])

    def to_dict(self) -> dict:
        """JSON-ready dict with AR@1/5/10/100 (where the budgets reach them) and AUC."""
        points = {
            f"AR@{n}": self.recall_at(n)
            for n in (1, 5, 10, 50, 100)
            if self.proposals_per_video[0] - 1e-9 <= n <= self.proposals_per_video[-1] + 1e-9
        }
        return {
            "tiou_thresholds": [float(x) for x in self.tiou_thresholds],
            **points,
            "AUC": self.auc,
            "average_recall": [float(x) for x in self.average_recall],
            "proposals_per_video": [float(x) for x in self.proposals_per_video],
        }


def evaluate_proposals(
    ground_truth: Segments,
    proposals: Segments,
    max_avg_proposals: float | None = 100,
    tiou_thresholds=ACTIVITYNET_TIOU,
) -> ProposalResult:
    """AR@AN of `proposals` (scores needed, labels ignored) against the `ground_truth` subset.

    `max_avg_proposals` None means all proposals (the official default); BMN uses 100.
    Raises `PredictionError` if there is no ground truth, no proposal, or none on its videos, and
    `ConfigError` for a negative `max_avg_proposals`, or one so large that the budgets of all videos
    (`max_avg_proposals` x videos) pass 2^53, beyond any proposal file and beyond exact counting.
    """
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if len(ground_truth) == 0:
        raise PredictionError("the ground truth holds no segments for this subset; check --subset")
    if proposals.score is None or len(proposals) == 0:
        raise PredictionError("the proposal file holds no scored proposals")
    videos, gt_video = np.unique(ground_truth.video, return_inverse=True)
    num_videos, num_all = len(videos), len(proposals)
    if max_avg_proposals and not 0 < max_avg_proposals * num_videos <= MAX_BUDGET:
        raise ConfigError(f"max_avg_proposals (--max-proposals) {max_avg_proposals:g} x {num_videos} videos is "
                          f"outside (0, 2^53] proposals; this file holds {num_all}: give an average per video such "
                          "as 100 (BMN), or 0 for all")
    if not max_avg_proposals:
        max_avg_proposals = float(num_all) / num_videos
    ratio = max_avg_proposals * float(num_videos) / num_all

    # Proposals on ground-truth videos, by (video, decreasing score), stable.
    prop_video = np.searchsorted(videos, proposals.video)
    on_gt = (prop_video < num_videos) & (videos[np.minimum(prop_video, num_videos - 1)] == proposals.video)
    prop_video, score = prop_video[on_gt], proposals.score[on_gt]
    start, end = proposals.start[on_gt], proposals.end[on_gt]
    order = np.lexsort((-score, prop_video))
    prop_video, start, end = prop_video[order], start[order], end[order]
    available = np.bincount(prop_video, minlength=num_videos)  # (V,)
    kept = np.minimum((available * ratio).astype(np.int64), available)
    total_kept = int(kept.sum())
    if total_kept == 0:
        raise PredictionError("no proposal falls on a video of the ground truth subset; check --subset and video ids")

    fractions = np.arange(1, 101) / 100.0 * (max_avg_proposals * float(num_videos) / total_kept)
    budget = np.minimum((kept[:, None] * fractions[None, :]).astype(np.int64), kept[:, None])  # (V, 100)

    # Every (ground truth, kept proposal of its video) pair, proposals in rank order.
    video_first = np.concatenate([[0], np.cumsum(available)[:-1]])
    count = kept[gt_video]
    pair_gt = np.repeat(np.arange(len(ground_truth)), count)
    offsets = np.concatenate([[0], np.cumsum(count)[:-1]])
    pair_rank = np.arange(len(pair_gt)) - offsets[pair_gt]
    pair_prop = video_first[gt_video[pair_gt]] + pair_rank
    tiou = segment_iou(start[pair_prop], end[pair_prop], ground_truth.start[pair_gt], ground_truth.end[pair_gt])

    never = np.iinfo(np.int64).max
    recall = np.zeros((len(thresholds), fractions.size))
    for t, threshold in enumerate(thresholds):
        first_hit = np.full(len(ground_truth), never, dtype=np.int64)
        np.minimum.at(first_hit, pair_gt, np.where(tiou >= threshold, pair_rank, never))
        hits = first_hit[:, None] < budget[gt_video]  # (G, 100)
        recall[t] = hits.sum(axis=0) / float(len(ground_truth))
    average_recall = recall.mean(axis=0)
    per_video = fractions * (float(total_kept) / num_videos)
    auc = float(_trapezoid(average_recall, per_video)) / per_video[-1]
    return ProposalResult(thresholds, recall, average_recall, per_video, auc)
