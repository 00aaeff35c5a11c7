"""Prediction readers and the eval-detection / eval-proposals commands."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from sola.cli import main
from sola.core.errors import PredictionError
from sola.data.predictions import align_video_ids, read_predictions

ORACLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "eval_oracle" / "thumos14"
needs_oracle = pytest.mark.skipif(
    not ORACLE.is_dir(), reason="../shared/data/eval_oracle/thumos14 is absent (shared data not mounted)"
)

GT = {
    "version": "toy",
    "database": {
        "vid_a": {"subset": "validation", "duration": 60.0, "annotations": [
            {"label": "jump", "segment": [1.0, 5.0], "label_id": 0},
            {"label": "run", "segment": [10.0, 20.0], "label_id": 1},
        ]},
        "vid_b": {"subset": "validation", "duration": 60.0, "annotations": [
            {"label": "jump", "segment": [30.0, 40.0], "label_id": 0},
        ]},
        "vid_c": {"subset": "training", "duration": 60.0, "annotations": [
            {"label": "jump", "segment": [0.0, 9.0], "label_id": 0},
        ]},
    },
}
OFFICIAL = {"results": {
    "vid_a": [{"label": "jump", "score": 0.9, "segment": [1.0, 5.0]},
              {"label": "run", "score": 0.8, "segment": [11.0, 20.0]}],
    "vid_b": [{"label": "jump", "score": 0.4, "segment": [0.0, 3.0]}],
}}


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_three_layouts_read_the_same(tmp_path):
    official = read_predictions(write(tmp_path / "official.json", OFFICIAL))
    flat = {"video-id": ["vid_a", "vid_a", "vid_b"], "t-start": [1.0, 11.0, 0.0], "t-end": [5.0, 20.0, 3.0],
            "label": np.array([0, 1, 0]), "score": np.array([0.9, 0.8, 0.4])}
    (tmp_path / "flat.pkl").write_bytes(pickle.dumps(flat))
    names = {0: "jump", 1: "run"}
    from_pickle = read_predictions(tmp_path / "flat.pkl", label_names=names)
    per_video = {"results": {
        "vid_a": {"segments": [[1.0, 5.0], [11.0, 20.0]], "scores": [0.9, 0.8], "labels": [0, 1]},
        "vid_b": {"segments": [[0.0, 3.0]], "scores": [0.4], "labels": [0]},
    }}
    from_arrays = read_predictions(write(tmp_path / "arrays.json", per_video), label_names=names)
    for other in (from_pickle, from_arrays):
        assert other.video.tolist() == official.video.tolist()
        assert other.label.tolist() == official.label.tolist() == ["jump", "run", "jump"]
        np.testing.assert_array_equal(other.start, official.start)
        np.testing.assert_array_equal(other.score, official.score)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"results": {"v": [{"label": "a", "score": 1.0}]}}), "segment"),
        (json.dumps({"results": {"v": [{"label": "a", "score": "high", "segment": [1, 3]}]}}), "'high' is not a number"),
        (json.dumps({"results": {"v": [{"label": "a", "score": 1.0, "segment": [1, "x"]}]}}), "end time 'x'"),
        (json.dumps({"results": {"v": {"segments": [[0, 1]], "scores": [1.0, 2.0], "labels": [0]}}}), "2 scores"),
        (json.dumps([1, 2]), "unrecognised prediction layout"),
    ],
)
def test_bad_prediction_files_name_the_problem(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(PredictionError, match=message) as info:
        read_predictions(path, label_names={0: "a"})
    assert str(path) in str(info.value)


def test_a_prediction_that_ends_before_it_starts_is_kept(tmp_path):
    # the official evaluator scores it (tIoU 0 with everything: a false positive); ground truth stays strict
    path = write(tmp_path / "p.json", {"results": {"v": [{"label": "a", "score": 1.0, "segment": [3, 1]}]}})
    assert read_predictions(path).end.tolist() == [1.0]


def test_class_ids_need_a_label_map(tmp_path):
    path = write(tmp_path / "ids.json", {"v": {"segments": [[0, 1]], "scores": [1.0], "labels": [3]}})
    with pytest.raises(PredictionError, match="label_id"):
        read_predictions(path)
    with pytest.raises(PredictionError, match=r"\[3\]"):
        read_predictions(path, label_names={0: "a"})


def test_video_ids_with_v_prefix_are_aligned(tmp_path):
    preds = read_predictions(write(tmp_path / "p.json", {"results": {"v_abc": [{"label": "a", "score": 1.0, "segment": [0, 1]}]}}))
    assert align_video_ids(preds, ["abc"]).video.tolist() == ["abc"]
    assert align_video_ids(preds, ["zzz"]).video.tolist() == ["v_abc"]


def test_eval_detection_command_on_a_toy_case(tmp_path, capsys):
    gt, pred, out = write(tmp_path / "gt.json", GT), write(tmp_path / "pred.json", OFFICIAL), tmp_path / "r.json"
    assert main(["eval-detection", str(gt), str(pred), "--subset", "Validation", "--tiou", "0.5", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # jump: 2 ground truths, one hit at rank 1 -> AP 0.5; run: tIoU 0.9 -> AP 1.
    assert result["per_class"]["jump"]["AP"] == [0.5]
    assert result["per_class"]["run"]["AP"] == [1.0]
    assert result["mAP"] == [0.75] and result["average_mAP"] == 0.75
    assert "75.00" in capsys.readouterr().out


def test_eval_detection_errors_are_one_line(tmp_path, capsys):
    gt, pred = write(tmp_path / "gt.json", GT), write(tmp_path / "pred.json", OFFICIAL)
    assert main(["eval-detection", str(gt), str(pred)]) == 2  # two subsets, none chosen
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--subset" in err and "Traceback" not in err
    assert main(["eval-detection", str(gt), str(tmp_path / "missing.json"), "--subset", "validation"]) == 2
    assert "missing.json does not exist" in capsys.readouterr().err
    assert main(["eval-detection", str(gt), str(pred), "--subset", "validation", "--tiou", "2"]) == 2
    assert "(0, 1]" in capsys.readouterr().err
    assert main(["eval-detection", str(gt), str(pred), "--subset", "test"]) == 2
    assert "subsets present" in capsys.readouterr().err


def test_eval_proposals_command(tmp_path):
    gt, pred, out = write(tmp_path / "gt.json", GT), write(tmp_path / "pred.json", OFFICIAL), tmp_path / "ar.json"
    assert main(["eval-proposals", str(gt), str(pred), "--subset", "validation", "--max-proposals", "2",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    # 3 ground truths, 10 thresholds; at the full budget jump@vid_a is recalled at all 10 (tIoU 1),
    # run at the 9 up to 0.9 (tIoU exactly 0.9), jump@vid_b at none.
    assert result["average_recall"][-1] == pytest.approx((10 + 9) / 30)
    assert 0 < result["AUC"] < 1


@needs_oracle
def test_eval_detection_command_equals_the_official_numbers(tmp_path):
    out = tmp_path / "thumos.json"
    assert main(["eval-detection", str(ORACLE / "gt.json"), str(ORACLE / "pred.json"), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    expected = json.loads((ORACLE / "expected.json").read_text())
    assert result["tiou_thresholds"] == [0.3, 0.4, 0.5, 0.6, 0.7]  # THUMOS ids pick the THUMOS preset
    np.testing.assert_allclose(result["mAP"], expected["mAP"], atol=1e-9, rtol=0)


@pytest.mark.parametrize("fast", [True, False], ids=["orjson", "json"])
def test_both_json_parsers_read_the_same_predictions_and_refuse_the_same_files(tmp_path, monkeypatch, fast):
    import sola.core.safe_load  # the one JSON parser of prediction (and annotation) files

    if fast and sola.core.safe_load.orjson is None:
        pytest.skip("orjson is not installed here (a dependency of sola: pip install -e . installs it)")
    if not fast:
        monkeypatch.setattr(sola.core.safe_load, "orjson", None)
    data = {"results": {"v1": [{"label": "a", "score": 0.25, "segment": [1.5, 3]},
                               {"label": "b", "score": 1e-300, "segment": [0, 2.0]}],
                        "v2": [{"label": "a", "score": 0.5, "segment": [4, 9]}], "v3": []}}
    found = read_predictions(write(tmp_path / "p.json", data))
    assert found.video.tolist() == ["v1", "v1", "v2"] and found.label.tolist() == ["a", "b", "a"]
    assert found.start.tolist() == [1.5, 0.0, 4.0] and found.score.tolist() == [0.25, 1e-300, 0.5]
    # NaN is no JSON for orjson: the file is parsed again, and refused for its score, not its syntax
    (tmp_path / "nan.json").write_text('{"results": {"v": [{"label": "a", "score": NaN, "segment": [1, 2]}]}}')
    with pytest.raises(PredictionError, match="non-finite score"):
        read_predictions(tmp_path / "nan.json")
    (tmp_path / "cut.json").write_text('{"results": {"v": [{"label": "a", "sco')
    with pytest.raises(PredictionError, match="not valid JSON"):
        read_predictions(tmp_path / "cut.json")
    (tmp_path / "latin.json").write_bytes('{"results": {"vidéo": []}}'.encode("latin-1"))
    with pytest.raises(PredictionError, match="cannot read"):
        read_predictions(tmp_path / "latin.json")
