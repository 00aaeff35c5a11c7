"""Detection mAP: the official evaluator's numbers, the matching rule by hand, and the loop reference."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from sola.core.errors import PredictionError
from sola.evaluate.metrics import (ACTIVITYNET_TIOU, THUMOS14_TIOU, Segments, evaluate_detection,
                                   interpolated_average_precision, parse_tiou, segment_iou)
from sola.evaluate.metrics.reference import reference_average_precision

ORACLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "eval_oracle" / "thumos14"


def gt(*rows):
    """Ground truth from (video, start, end, label) rows."""
    video, start, end, label = zip(*rows)
    return Segments.build(video, start, end, label)


def pred(*rows):
    """Predictions from (video, start, end, label, score) rows."""
    video, start, end, label, score = zip(*rows)
    return Segments.build(video, start, end, label, score)


# -- the official evaluator's answer -------------------------------------------------------------
@pytest.mark.skipif(not ORACLE.is_dir(), reason="../shared/data/eval_oracle/thumos14 is absent (shared data not mounted)")
def test_equals_official_evaluator_on_thumos14():
    from sola.data.annotations import load_annotations
    from sola.data.predictions import ground_truth_segments, read_predictions

    case = json.loads((ORACLE / "case.json").read_text())
    expected = json.loads((ORACLE / "expected.json").read_text())
    annotations = load_annotations(ORACLE / "gt.json", bad_segments="keep")
    truth = ground_truth_segments(annotations, case["subset"])
    result = evaluate_detection(truth, read_predictions(ORACLE / "pred.json"), case["tiou_thresholds"])
    assert len(result.classes) == 20
    np.testing.assert_allclose(result.mAP, expected["mAP"], rtol=0, atol=1e-9)
    assert abs(result.average_mAP - expected["average_mAP"]) < 1e-9


# -- the matching rule, by hand ------------------------------------------------------------------
def test_falls_back_to_next_best_ground_truth():
    # A (score 0.9) takes g1 (its best). B's best is also g1, so B falls back to g2 (tIoU 0.6).
    truth = gt(("v", 0, 10, "a"), ("v", 8, 18, "a"))
    preds = pred(("v", 0, 10, "a", 0.9), ("v", 2, 13, "a", 0.8))
    # B vs g1: inter 8, union 13 -> 0.615; B vs g2: inter 5, union 16 -> 0.3125
    result = evaluate_detection(truth, preds, [0.3, 0.5])
    # At 0.3 B falls back to g2: two TPs, AP 1. At 0.5 g2 is too far: B is a FP after a TP: AP 0.5.
    np.testing.assert_allclose(result.ap[:, 0], [1.0, 0.5])


def test_duplicates_count_once():
    truth = gt(("v", 0, 10, "a"))
    preds = pred(("v", 0, 10, "a", 0.9), ("v", 0, 10, "a", 0.8), ("v", 0, 10, "a", 0.7))
    result = evaluate_detection(truth, preds, [0.5])
    assert result.ap[0, 0] == pytest.approx(1.0)  # recall 1 reached at the first prediction
    # Duplicate first, then the real hit: precision 1/2 at recall 1.
    preds = pred(("v", 30, 40, "a", 0.95), ("v", 0, 10, "a", 0.9), ("v", 0, 10, "a", 0.8))
    assert evaluate_detection(truth, preds, [0.5]).ap[0, 0] == pytest.approx(0.5)


def test_class_without_predictions_scores_zero_and_counts_in_the_mean():
    truth = gt(("v", 0, 10, "a"), ("w", 0, 10, "b"))
    preds = pred(("v", 0, 10, "a", 0.9))
    result = evaluate_detection(truth, preds, [0.5, 0.7])
    assert result.classes == ["a", "b"]
    np.testing.assert_allclose(result.ap, [[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(result.mAP, [0.5, 0.5])
    assert result.num_predictions.tolist() == [1, 0]


def test_unknown_labels_are_ignored_with_a_warning():
    truth = gt(("v", 0, 10, "a"), ("v", 20, 30, "a"))
    base = [("v", 0, 10, "a", 0.5), ("v", 40, 50, "a", 0.4), ("v", 20, 30, "a", 0.3)]
    with_unknown = base + [("v", 0, 10, "zebra", 0.99), ("v", 20, 30, "zebra", 0.98)]
    with pytest.warns(UserWarning, match="zebra"):
        noisy = evaluate_detection(truth, pred(*with_unknown), [0.5])
    clean = evaluate_detection(truth, pred(*base), [0.5])
    np.testing.assert_array_equal(noisy.ap, clean.ap)
    assert noisy.ignored_labels == {"zebra": 2}
    assert noisy.to_dict()["ignored_labels"] == {"zebra": 2}


def test_score_ties_keep_input_order():
    truth = gt(("v", 0, 10, "a"))
    hit, miss = ("v", 0, 10, "a", 0.5), ("v", 50, 60, "a", 0.5)
    # Hit first: precision 1 at recall 1 -> AP 1. Miss first: precision 1/2 at recall 1 -> AP 0.5.
    assert evaluate_detection(truth, pred(hit, miss), [0.5]).ap[0, 0] == pytest.approx(1.0)
    assert evaluate_detection(truth, pred(miss, hit), [0.5]).ap[0, 0] == pytest.approx(0.5)


def test_tiou_ties_go_to_the_later_ground_truth():
    # p1 has tIoU 0.5 with g1 and g2 (an exact tie). It takes g2 (the later one), so p2, whose only
    # acceptable match is g2, finds it taken and fails; with the other tie rule p2 would succeed.
    truth = gt(("v", 0, 10, "a"), ("v", 10, 20, "a"))
    preds = pred(("v", 5, 15, "a", 0.9), ("v", 12, 20, "a", 0.8))
    result = evaluate_detection(truth, preds, [1 / 3])
    # p1 vs g1: inter 5 union 15 -> 1/3; p2 vs g2: 8/10; p2 vs g1: 0.
    np.testing.assert_allclose(result.ap[:, 0], [0.5 * 1.0])  # p1 TP (recall .5, prec 1); p2 FP
    _, reference = reference_average_precision(truth, preds, [1 / 3])
    np.testing.assert_allclose(result.ap, reference)


def test_predictions_on_videos_without_that_class_are_false_positives():
    truth = gt(("v", 0, 10, "a"), ("w", 0, 10, "b"))
    preds = pred(("w", 0, 10, "a", 0.9), ("x", 0, 10, "a", 0.8), ("v", 0, 10, "a", 0.7))
    result = evaluate_detection(truth, preds, [0.5])
    assert result.ap[0, 0] == pytest.approx(1 / 3)  # the hit comes third: precision 1/3


def test_zero_length_segments_give_no_nan():
    truth = gt(("v", 5, 5, "a"), ("v", 0, 10, "a"))
    preds = pred(("v", 5, 5, "a", 0.9), ("v", 0, 10, "a", 0.8), ("v", 3, 3, "a", 0.7))
    result = evaluate_detection(truth, preds, [0.5])
    assert np.isfinite(result.ap).all()
    # Only (0, 10) matches, found second, and the zero-length ground truth stays unmatched:
    # precision 1/2 at recall 1/2.
    assert result.ap[0, 0] == pytest.approx(0.25)
    assert segment_iou(5.0, 5.0, 5.0, 5.0) == 0.0


@pytest.mark.filterwarnings("ignore:ignored")
def test_matches_the_loop_reference_on_random_cases():
    rng = np.random.default_rng(7)
    for trial in range(25):
        n_gt, n_pred = rng.integers(1, 40), rng.integers(0, 120)
        videos = [f"v{i}" for i in range(rng.integers(1, 5))]
        labels = ["a", "b", "c"][: rng.integers(1, 4)]
        # Coarse grids force ties in score and in tIoU.
        g_start = rng.integers(0, 20, n_gt).astype(float)
        truth = Segments.build(rng.choice(videos, n_gt), g_start, g_start + rng.integers(0, 8, n_gt),
                               rng.choice(labels, n_gt))
        p_start = rng.integers(0, 20, n_pred).astype(float)
        preds = Segments.build(rng.choice(videos + ["other"], n_pred), p_start, p_start + rng.integers(0, 8, n_pred),
                               rng.choice(labels, n_pred), rng.integers(0, 5, n_pred) / 4)
        thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
        result = evaluate_detection(truth, preds, thresholds)
        classes, reference = reference_average_precision(truth, preds, thresholds)
        assert result.classes == classes, trial
        np.testing.assert_allclose(result.ap, reference, rtol=0, atol=1e-12, err_msg=f"trial {trial}")


# -- pieces ------------------------------------------------------------------------------------
def test_interpolated_average_precision_by_hand():
    # TP, FP, TP with 3 positives: precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3.
    # Envelope: 1 up to recall 1/3, then 2/3 up to 2/3 -> AP = 1/3 + (1/3)(2/3) = 5/9.
    ap = interpolated_average_precision(np.array([[1, 0, 1]]), 3)
    assert ap[0] == pytest.approx(5 / 9)
    assert interpolated_average_precision(np.zeros((2, 0)), 4).tolist() == [0.0, 0.0]


def test_threshold_presets_are_exact_decimals():
    assert parse_tiou("thumos14").tolist() == [0.3, 0.4, 0.5, 0.6, 0.7] == list(THUMOS14_TIOU)
    assert parse_tiou("activitynet").tolist() == list(ACTIVITYNET_TIOU)
    assert parse_tiou("0.5:0.05:0.95").tolist() == list(ACTIVITYNET_TIOU)
    assert parse_tiou("0.3:0.1:0.7").tolist() == [0.3, 0.4, 0.5, 0.6, 0.7]
    assert parse_tiou("0.5, 0.75").tolist() == [0.5, 0.75]
    for bad in ("1.5", "0:0.1:0.5", "abc", "0.7:0.1:0.3"):
        with pytest.raises(PredictionError):
            parse_tiou(bad)


def test_bad_segments_are_refused_with_the_video_named():
    with pytest.raises(PredictionError, match="'v'.*ends before it starts"):
        Segments.build(["v"], [5.0], [4.0], ["a"], [1.0], where="p.json")
    with pytest.raises(PredictionError, match="non-finite score"):
        Segments.build(["v"], [0.0], [4.0], ["a"], [float("nan")])


def test_empty_ground_truth_is_an_error():
    with pytest.raises(PredictionError, match="--subset"):
        evaluate_detection(Segments.build([], [], [], []), pred(("v", 0, 1, "a", 1.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate_detection(gt(("v", 0, 1, "a")), Segments.build([], [], [], [], []))
    assert result.mAP.tolist() == [0.0] * 10
