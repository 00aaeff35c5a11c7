"""Proposal AR@AN and AUC: by hand and against a loop transcription of the official rule."""

from __future__ import annotations

import numpy as np
import pytest

from sola.core.errors import PredictionError
from sola.evaluate.metrics import Segments, evaluate_proposals, segment_iou


def loop_average_recall(truth: Segments, proposals: Segments, max_avg, thresholds):
    """The official eval_proposal rule, one video and one budget at a time (stable score order)."""
    videos = list(dict.fromkeys(truth.video.tolist()))
    n_all = len(proposals)
    max_avg = max_avg or n_all / len(videos)
    ratio = max_avg * float(len(videos)) / n_all
    scores, total = [], 0
    for v in videos:
        g = np.flatnonzero(truth.video == v)
        p = np.flatnonzero(proposals.video == v)
        if len(p) == 0:
            scores.append(np.zeros((len(g), 1)))
            continue
        p = p[np.argsort(-proposals.score[p], kind="stable")]
        keep = min(int(len(p) * ratio), len(p))
        total += keep
        p = p[:keep]
        scores.append(segment_iou(proposals.start[p][None, :], proposals.end[p][None, :],
                                  truth.start[g][:, None], truth.end[g][:, None]))
    fractions = np.arange(1, 101) / 100.0 * (max_avg * float(len(videos)) / total)
    recall = np.zeros((len(thresholds), 100))
    for t, thr in enumerate(thresholds):
        matches, positives = 0, 0
        for score in scores:
            positives += score.shape[0]
            budgets = np.minimum((score.shape[1] * fractions).astype(int), score.shape[1])
            matches = matches + np.array([np.count_nonzero((score[:, :n] >= thr).sum(axis=1)) for n in budgets])
        recall[t] = matches / positives
    average = recall.mean(axis=0)
    per_video = fractions * (float(total) / len(videos))
    return recall, average, per_video, float(np.trapezoid(average, per_video)) / per_video[-1]


def test_by_hand_one_video():
    truth = Segments.build(["v", "v"], [0, 20], [10, 30], ["a", "b"])
    # Ranked: a hit on g1, a miss, a hit on g2 (labels are ignored).
    proposals = Segments.build(["v"] * 3, [0, 50, 20], [10, 60, 30], None, [0.9, 0.8, 0.7])
    result = evaluate_proposals(truth, proposals, max_avg_proposals=3, tiou_thresholds=[0.5])
    # Budgets int(3 * k/100): 0 for k < 34, 1 for 34..66, 2 for 67..99, 3 at 100.
    assert result.recall[0, 32] == 0.0
    assert result.recall[0, 33] == 0.5
    assert result.recall[0, 66] == 0.5
    assert result.recall[0, 99] == 1.0
    assert result.proposals_per_video[-1] == pytest.approx(3.0)
    assert result.recall_at(3) == 1.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_loop_transcription(seed):
    rng = np.random.default_rng(seed)
    n_gt, n_prop = 60, 900
    videos = np.array([f"v{i}" for i in range(12)])
    g_start = rng.uniform(0, 90, n_gt)
    truth = Segments.build(rng.choice(videos[:10], n_gt), g_start, g_start + rng.uniform(0, 20, n_gt), ["x"] * n_gt)
    p_start = rng.uniform(0, 90, n_prop)
    # Some proposals on videos outside the ground truth (they count in the ratio, as officially).
    proposals = Segments.build(rng.choice(videos, n_prop), p_start, p_start + rng.uniform(0, 20, n_prop), None,
                               rng.integers(0, 50, n_prop) / 50)
    thresholds = [0.5, 0.7, 0.9]
    for max_avg in (100, 20, None):
        result = evaluate_proposals(truth, proposals, max_avg, thresholds)
        recall, average, per_video, auc = loop_average_recall(truth, proposals, max_avg, thresholds)
        np.testing.assert_allclose(result.recall, recall, atol=1e-12)
        np.testing.assert_allclose(result.proposals_per_video, per_video, atol=1e-12)
        assert result.auc == pytest.approx(auc, abs=1e-12)
        assert 0 < result.auc < 1


def test_no_proposal_on_the_subset_is_an_error():
    truth = Segments.build(["v"], [0], [10], ["a"])
    proposals = Segments.build(["w"], [0], [10], None, [1.0])
    with pytest.raises(PredictionError, match="no proposal"):
        evaluate_proposals(truth, proposals)
