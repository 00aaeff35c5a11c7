"""Soft-NMS and hard NMS against a small brute-force reference; score voting by hand."""

import math

import numpy as np
import pytest

from sola.tal.nms import batched_nms, suppress_one_class


def iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / ((a[1] - a[0]) + (b[1] - b[0]) - inter)


def reference_soft_nms(segments, scores, sigma, min_score):
    """Bodla et al.'s Gaussian Soft-NMS written as the plain loop of the paper (one class)."""
    remaining = [(list(s), float(p)) for s, p in zip(segments, scores) if p >= min_score]
    kept = []
    while remaining:
        best = max(range(len(remaining)), key=lambda i: remaining[i][1])
        segment, score = remaining.pop(best)
        kept.append((segment, score))
        decayed = []
        for other, other_score in remaining:
            other_score *= math.exp(-iou(segment, other) ** 2 / sigma)
            if other_score >= min_score:
                decayed.append((other, other_score))
        remaining = decayed
    return kept


def reference_hard_nms(segments, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(iou(segments[i], segments[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def random_segments(rng, n):
    start = rng.uniform(0, 50, n)
    return np.stack([start, start + rng.uniform(0.5, 15, n)], 1), rng.uniform(0.0005, 1.0, n)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_nms_matches_brute_force_per_class(seed):
    rng = np.random.default_rng(seed)
    segments, scores = random_segments(rng, 40)
    labels = rng.integers(0, 3, 40)
    got_segments, got_scores, got_labels = batched_nms(segments, scores, labels, "soft", sigma=0.5, min_score=0.001,
                                                       max_seg_num=1000, multiclass=True, voting_thresh=0.0)
    expected = []
    for label in range(3):
        chosen = labels == label
        expected += [(s, p, label) for s, p in reference_soft_nms(segments[chosen], scores[chosen], 0.5, 0.001)]
    expected.sort(key=lambda x: -x[1])
    assert len(got_scores) == len(expected)
    assert got_scores.tolist() == pytest.approx([p for _, p, _ in expected], rel=1e-9)
    assert np.allclose(got_segments, np.array([s for s, _, _ in expected]))
    assert got_labels.tolist() == [label for _, _, label in expected]


def test_soft_nms_early_stop_equals_prefix_of_full_run():
    rng = np.random.default_rng(5)
    segments, scores = random_segments(rng, 60)
    full_index, full_scores = suppress_one_class(segments, scores, "soft", 0.5)
    part_index, part_scores = suppress_one_class(segments, scores, "soft", 0.5, max_keep=7)
    assert part_index.tolist() == full_index[:7].tolist()
    assert np.all(np.diff(full_scores) <= 0)  # picks never increase: why stopping early is exact


def test_hard_nms_matches_brute_force_class_agnostic():
    rng = np.random.default_rng(3)
    segments, scores = random_segments(rng, 40)
    index, _ = suppress_one_class(segments, scores, "hard", iou_threshold=0.3, min_score=0.0)
    assert index.tolist() == reference_hard_nms(segments, scores, 0.3)


def test_score_voting_by_hand():
    segments = np.array([[0.0, 10.0], [1.0, 11.0], [30.0, 40.0]])
    scores = np.array([0.9, 0.5, 0.8])
    labels = np.zeros(3, dtype=np.int64)
    out_segments, out_scores, _ = batched_nms(segments, scores, labels, "soft", sigma=0.5, min_score=0.001,
                                              max_seg_num=200, voting_thresh=0.7)
    overlap = 9 / 11  # IoU of the first two
    assert out_scores.tolist() == pytest.approx([0.9, 0.8, 0.5 * math.exp(-overlap**2 / 0.5)])
    w_self, w_other = 0.9 * 1.0, 0.5 * overlap
    voted = [w_other / (w_self + w_other), (10 * w_self + 11 * w_other) / (w_self + w_other)]
    assert out_segments[0] == pytest.approx(np.array(voted))
    assert out_segments[1].tolist() == [30.0, 40.0]  # no neighbour above 0.7


def test_max_seg_num_and_empty_input():
    rng = np.random.default_rng(0)
    segments, scores = random_segments(rng, 100)
    out = batched_nms(segments, scores, np.zeros(100, dtype=np.int64), max_seg_num=10)
    assert len(out[1]) == 10 and np.all(np.diff(out[1]) <= 0)
    empty = batched_nms(np.zeros((0, 2)), np.zeros(0), np.zeros(0, dtype=np.int64))
    assert [len(x) for x in empty] == [0, 0, 0]


def _plain_suppress(segments, scores, method, sigma=0.5, iou_threshold=0.1, min_score=0.001, max_keep=None):
    """The plain loop over every candidate at every pick (what suppress_one_class must equal)."""
    from sola.evaluate.metrics.segments import segment_iou

    alive = np.where(scores >= min_score, scores, -np.inf).astype(np.float64)
    limit = len(scores) if max_keep is None else min(max_keep, len(scores))
    kept, kept_scores = [], []
    while len(kept) < limit:
        best = int(np.argmax(alive))
        if not np.isfinite(alive[best]):
            break
        kept.append(best)
        kept_scores.append(alive[best])
        alive[best] = -np.inf
        iou = segment_iou(segments[best, 0], segments[best, 1], segments[:, 0], segments[:, 1])
        if method == "soft":
            alive = alive * np.exp(-(iou * iou) / sigma)
            alive[alive < min_score] = -np.inf
        else:
            alive[iou > iou_threshold] = -np.inf
    return np.asarray(kept, dtype=np.int64), np.asarray(kept_scores)


def random_candidates(rng, n: int, longest: float, power: float, tie: float, ties: int):
    """`n` segments over 100 s (0.5 to `longest` long) with skewed scores, `ties` of them set to `tie` (the lowest
    index must win a tie, as np.argmax over all candidates)."""
    starts = rng.uniform(0, 100, n)
    segments = np.stack([starts, starts + rng.uniform(0.5, longest, n)], 1)
    scores = rng.uniform(0, 1, n) ** power
    scores[rng.choice(n, ties)] = tie
    return segments, scores


@pytest.mark.parametrize("method", ["soft", "hard"])
@pytest.mark.parametrize("seed", range(4))
def test_suppression_carrying_only_live_candidates_equals_the_plain_loop(method, seed):
    from sola.tal.nms import suppress_one_class

    segments, scores = random_candidates(np.random.default_rng(seed), 400, longest=20, power=3, tie=0.5, ties=40)
    for max_keep in (None, 50):
        index, score = suppress_one_class(segments, scores, method, max_keep=max_keep)
        expected_index, expected_score = _plain_suppress(segments, scores, method, max_keep=max_keep)
        np.testing.assert_array_equal(index, expected_index)
        np.testing.assert_array_equal(score, expected_score)


@pytest.mark.parametrize("method", ["soft", "hard", "none"])
def test_classes_suppressed_at_once_equal_each_class_alone(method):
    from sola.tal.nms import suppress_rows

    rng = np.random.default_rng(7)
    groups = []
    for n in (1, 30, 250, 0, 90):  # groups of unequal size (one empty): padded entries never come out
        starts = rng.uniform(0, 50, n)
        groups.append((np.stack([starts, starts + rng.uniform(0.2, 9, n)], 1), rng.uniform(0, 1, n) ** 2))
    for max_keep in (None, 20):
        together = suppress_rows([g[0] for g in groups], [g[1] for g in groups], method, max_keep=max_keep)
        for (segments, scores), (index, score) in zip(groups, together):
            if method == "none":
                alive = np.where(scores >= 0.001, scores, -np.inf)
                order = np.argsort(-alive, kind="stable")[: len(scores) if max_keep is None else max_keep]
                expected = order[np.isfinite(alive[order])], alive[order[np.isfinite(alive[order])]]
            else:
                expected = _plain_suppress(segments, scores, method, max_keep=max_keep)
            np.testing.assert_array_equal(index, expected[0])
            np.testing.assert_array_equal(score, expected[1])


def test_a_tiny_sigma_never_revives_dead_candidates():
    from sola.tal.nms import suppress_one_class

    segments = np.array([[0.0, 10.0], [0.0, 10.0], [1.0, 10.0]])
    scores = np.array([0.9, 0.0001, 0.5])  # the second is dead from the start; overlapped by the first pick,
    index, score = suppress_one_class(segments, scores, "soft", sigma=1e-4)  # -inf * exp(-1e4) = -inf * 0 = NaN
    np.testing.assert_array_equal(index, [0])
    assert np.isfinite(score).all()


@pytest.mark.parametrize("method", ["soft", "hard"])
@pytest.mark.parametrize("max_seg_num", [5, 30, 200])
def test_batched_nms_stopping_once_the_best_are_known_equals_every_class_in_full(method, max_seg_num):
    rng = np.random.default_rng(max_seg_num)
    segments, scores = random_candidates(rng, 900, longest=15, power=4, tie=0.25, ties=60)  # ties across classes
    labels = rng.integers(0, 12, 900)
    got = batched_nms(segments, scores, labels, method=method, max_seg_num=max_seg_num)
    index, score = [], []
    for label in np.unique(labels):  # the plain way: every class in full, then the best overall
        members = np.nonzero(labels == label)[0]
        picked, values = _plain_suppress(segments[members], scores[members], method, max_keep=max_seg_num)
        index.append(members[picked])
        score.append(values)
    index, score = np.concatenate(index), np.concatenate(score)
    order = np.argsort(-score, kind="stable")[:max_seg_num]
    np.testing.assert_array_equal(got[0], segments[index[order]])
    np.testing.assert_array_equal(got[1], score[order])
    np.testing.assert_array_equal(got[2], labels[index[order]])
