"""DETAD's false-positive analysis: every category by hand, the top-kG cut, the mAP gain, a loop reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sola.core.errors import ConfigError, PredictionError
from sola.evaluate.metrics import (ACTIVITYNET_TIOU, ERROR_TYPES, FalsePositiveAnalysis, Segments, classify_predictions,
                                   evaluate_detection, false_positive_analysis, segment_iou)
from sola.evaluate.metrics.errors import CATEGORIES, category_codes
from tests.test_metrics_detection import gt, pred  # (video, start, end, label[, score]) rows -> Segments

# Two annotated videos (and a third, "C", without ground truth).
GROUND_TRUTH = gt(("A", 10, 20, "jump"), ("A", 40, 50, "run"), ("B", 5, 15, "jump"))
# (prediction, its category at tIoU 0.5, at tIoU 0.95)
CASES = [
    (("A", 10, 20, "jump", 0.90), "true positive", "true positive"),  # takes A's jump
    (("A", 11, 20, "jump", 0.80), "double detection", "localization"),  # tIoU 0.9 with the taken jump
    (("A", 40, 50, "jump", 0.95), "wrong label", "wrong label"),  # exactly on A's run
    (("B", 5, 8, "jump", 0.85), "localization", "localization"),  # tIoU 0.3 with B's jump
    (("A", 10, 13, "run", 0.30), "confusion", "confusion"),  # tIoU 0.3 with A's jump
    (("A", 70, 80, "jump", 0.70), "background", "background"),  # overlaps nothing
    (("C", 10, 20, "jump", 0.65), "background", "background"),  # a video without ground truth
    (("B", 5, 15, "jump", 0.50), "true positive", "true positive"),  # takes B's jump
    (("A", 40, 50, "run", 0.20), "true positive", "true positive"),  # takes A's run
]
PREDICTIONS = pred(*(row for row, _, _ in CASES))


def test_every_category_by_hand():
    assert list(classify_predictions(GROUND_TRUTH, PREDICTIONS, 0.5)) == [c for _, c, _ in CASES]
    assert list(classify_predictions(GROUND_TRUTH, PREDICTIONS, 0.95)) == [c for _, _, c in CASES]
    assert ERROR_TYPES == CATEGORIES[1:]


def test_fractions_and_counts_at_one_and_two_thresholds():
    one = false_positive_analysis(GROUND_TRUTH, PREDICTIONS, [0.5])
    assert one.counts == {"double detection": 1, "wrong label": 1, "localization": 1, "confusion": 1, "background": 2}
    assert one.fractions == pytest.approx({name: (2 if name == "background" else 1) / 6 for name in ERROR_TYPES})
    assert sum(one.fractions.values()) == pytest.approx(1.0)
    assert one.category_counts.tolist() == [[3, 1, 1, 1, 1, 2]]
    # At 0.95 the double detection becomes a localization error: counts add over thresholds.
    two = false_positive_analysis(GROUND_TRUTH, PREDICTIONS, [0.5, 0.95])
    assert two.counts == {"double detection": 1, "wrong label": 2, "localization": 3, "confusion": 2, "background": 4}
    assert two.fractions["localization"] == pytest.approx(3 / 12)
    assert two.num_predictions == len(PREDICTIONS)


def test_map_gain_by_hand():
    # At tIoU 0.5, jump (G=2) ranks WL, TP, Loc, DD, Bg, Bg, TP: AP = 1/2 * 1/2 + 1/2 * 2/7;
    # run (G=1) ranks Conf, TP: AP = 1/2.
    analysis = false_positive_analysis(GROUND_TRUTH, PREDICTIONS, [0.5])
    jump = 0.5 * 0.5 + 0.5 * 2 / 7
    assert analysis.average_mAP == pytest.approx((jump + 0.5) / 2)
    expected = {
        "wrong label": (0.5 + 0.5 * 2 / 6) - jump,  # TP first
        "double detection": (0.25 + 0.5 * 2 / 6) - jump,
        "localization": (0.25 + 0.5 * 2 / 6) - jump,
        "background": (0.25 + 0.5 * 2 / 5) - jump,
        "confusion": 1.0 - 0.5,  # run's TP comes first
    }
    assert analysis.map_gain == pytest.approx({name: gain / 2 for name, gain in expected.items()})


def test_map_gain_is_the_evaluator_without_that_type():
    analysis = false_positive_analysis(GROUND_TRUTH, PREDICTIONS, ACTIVITYNET_TIOU)
    baseline = evaluate_detection(GROUND_TRUTH, PREDICTIONS, ACTIVITYNET_TIOU).average_mAP
    assert analysis.average_mAP == pytest.approx(baseline)
    for name in ERROR_TYPES:
        removed = []
        for t in ACTIVITYNET_TIOU:
            kept = classify_predictions(GROUND_TRUTH, PREDICTIONS, t) != name
            removed.append(evaluate_detection(GROUND_TRUTH, PREDICTIONS.select(kept), [t]).mAP[0])
        assert analysis.map_gain[name] == pytest.approx(np.mean(removed) - baseline), name
        assert analysis.map_gain[name] > 0, name  # each type ranks above a true positive here


def test_top_k_keeps_each_class_top_k_times_its_instances():
    # k = 1: jump (G=2) keeps its two best (WL 0.95, TP 0.90), run (G=1) its best (Conf 0.30).
    analysis = false_positive_analysis(GROUND_TRUTH, PREDICTIONS, [0.5], top_k=1)
    assert analysis.num_predictions == 3
    assert analysis.counts == {"double detection": 0, "wrong label": 1, "localization": 0, "confusion": 1,
                               "background": 0}
    assert analysis.profile.shape == (1, 6)
    assert analysis.profile[0].tolist() == pytest.approx([1 / 3, 0, 1 / 3, 0, 1 / 3, 0])
    # The baseline is the analysed predictions' mAP: jump WL, TP -> 1/2 * 1/2; run Conf -> 0.
    assert analysis.average_mAP == pytest.approx(0.125)


def test_profile_bins_follow_the_rank_within_each_class():
    analysis = false_positive_analysis(GROUND_TRUTH, PREDICTIONS, [0.5], top_k=4)
    # jump: bin 1 = WL, TP; bin 2 = Loc, DD; bin 3 = Bg, Bg; bin 4 = TP. run: bin 1 = Conf, bin 2 = TP.
    expected = [[1, 0, 1, 0, 1, 0], [1, 1, 0, 1, 0, 0], [0, 0, 0, 0, 0, 2], [1, 0, 0, 0, 0, 0]]
    sizes = np.array([3, 3, 2, 1])[:, None]
    assert analysis.profile == pytest.approx(np.array(expected) / sizes)


def test_ties_in_tiou_go_to_the_first_listed_ground_truth():
    prediction = pred(("D", 0, 4, "b", 0.9))  # tIoU 0.4 with both
    first_a = gt(("D", 0, 10, "a"), ("D", 0, 10, "b"))
    first_b = gt(("D", 0, 10, "b"), ("D", 0, 10, "a"))
    assert classify_predictions(first_a, prediction, 0.5).tolist() == ["confusion"]
    assert classify_predictions(first_b, prediction, 0.5).tolist() == ["localization"]


def test_best_overlap_wins_over_a_same_label_one():
    # The best overlap is the run (tIoU 0.9), so DETAD says wrong label although the (taken) jumps
    # overlap 8/11 >= 0.5: not a double detection.
    truth = gt(("A", 0, 10, "run"), ("A", 2, 12, "jump"), ("A", 2, 12, "jump"))
    taken = pred(("A", 2, 12, "jump", 0.99), ("A", 2, 12, "jump", 0.98), ("A", 1, 10, "jump", 0.5))
    assert classify_predictions(truth, taken, 0.5).tolist() == ["true positive", "true positive", "wrong label"]


def test_labels_without_ground_truth():
    predictions = pred(("A", 40, 50, "swim", 0.9), ("A", 60, 70, "swim", 0.8), ("A", 10, 20, "jump", 0.1))
    assert classify_predictions(GROUND_TRUTH, predictions, 0.5).tolist() == ["wrong label", "background",
                                                                             "true positive"]
    analysis = false_positive_analysis(GROUND_TRUTH, predictions, [0.5])
    assert analysis.num_predictions == 1  # G = 0 for swim: none analysed
    assert sum(analysis.counts.values()) == 0 and sum(analysis.fractions.values()) == 0


def test_to_dict_is_json_ready():
    analysis = false_positive_analysis(GROUND_TRUTH, PREDICTIONS, [0.5, 0.95], top_k=2)
    assert isinstance(analysis, FalsePositiveAnalysis)
    data = json.loads(json.dumps(analysis.to_dict()))
    assert data["counts"] == analysis.counts and data["top_k"] == 2 and list(data["profile"]) == ["1G", "2G"]
    assert data["category_counts"][1]["tiou"] == 0.95 and data["category_counts"][1]["double detection"] == 0
    assert data["map_gain"] == pytest.approx(analysis.map_gain)


def test_bad_input():
    with pytest.raises(PredictionError, match="no segments"):
        false_positive_analysis(Segments.build([], [], []), PREDICTIONS)
    unscored = Segments.build(["A"], [0], [1], ["jump"])
    with pytest.raises(PredictionError, match="score"):
        classify_predictions(GROUND_TRUTH, unscored, 0.5)
    with pytest.raises(ConfigError, match="top_k"):
        false_positive_analysis(GROUND_TRUTH, PREDICTIONS, top_k=0)


# -- a plain loop of DETAD's rules as the yardstick ----------------------------------------------
def overlap(predictions: Segments, i: int, truth: Segments, j: int) -> float:
    return float(segment_iou(predictions.start[i], predictions.end[i], truth.start[j], truth.end[j]))


def loop_categories(truth: Segments, predictions: Segments, threshold: float, low: float = 0.1) -> list[str]:
    """DETAD's matching and `analyze_fp_error_types`, one prediction at a time."""
    true_positive = set()
    for name in set(truth.label.tolist()):
        rows = sorted((i for i in range(len(predictions)) if predictions.label[i] == name),
                      key=lambda i: -predictions.score[i])
        taken = set()
        for i in rows:
            candidates = [j for j in range(len(truth))
                          if truth.label[j] == name and truth.video[j] == predictions.video[i]]
            scored = sorted(((overlap(predictions, i, truth, j), position, j) for position, j in enumerate(candidates)),
                            reverse=True)
            for iou, _, j in scored:
                if iou < threshold:
                    break
                if j not in taken:
                    taken.add(j)
                    true_positive.add(i)
                    break
    out = []
    for i in range(len(predictions)):
        same_video = [j for j in range(len(truth)) if truth.video[j] == predictions.video[i]]
        if i in true_positive:
            out.append("true positive")
            continue
        if not same_video:
            out.append("background")
            continue
        ious = [overlap(predictions, i, truth, j) for j in same_video]
        best = int(np.argmax(ious))
        same = truth.label[same_video[best]] == predictions.label[i]
        if ious[best] >= threshold:
            out.append("double detection" if same else "wrong label")
        elif ious[best] >= low:
            out.append("localization" if same else "confusion")
        else:
            out.append("background")
    return out


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_equals_the_loop(seed):
    rng = np.random.default_rng(seed)
    n_gt, n_pred = 14, 90
    gt_start = rng.uniform(0, 60, n_gt)
    truth = Segments.build(rng.choice(["v0", "v1", "v2", "v3"], n_gt), gt_start, gt_start + rng.uniform(2, 20, n_gt),
                           rng.choice(["a", "b", "c"], n_gt))
    anchor = rng.integers(0, n_gt, n_pred)  # predictions near a ground truth, or anywhere in any video
    near = rng.random(n_pred) < 0.7
    start = np.where(near, truth.start[anchor] + rng.normal(0, 2, n_pred), rng.uniform(0, 60, n_pred))
    length = np.where(near, (truth.end - truth.start)[anchor] * rng.uniform(0.5, 1.5, n_pred),
                      rng.uniform(1, 20, n_pred))
    video = np.where(near, truth.video[anchor], rng.choice(["v0", "v1", "v4"], n_pred))
    label = np.where(rng.random(n_pred) < 0.6, truth.label[anchor], rng.choice(["a", "b", "c", "d"], n_pred))
    predictions = Segments.build(video, start, start + length, label, rng.random(n_pred))
    thresholds = [0.3, 0.5, 0.7]
    codes = category_codes(truth, predictions, thresholds)
    for t, threshold in enumerate(thresholds):
        expected = loop_categories(truth, predictions, threshold)
        assert [CATEGORIES[c] for c in codes[t]] == expected
    assert set(np.asarray(CATEGORIES)[codes.ravel()]) >= {"true positive", "background", "localization"}
