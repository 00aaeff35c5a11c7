"""Inference outputs: the ActivityNet format, the class-agnostic protocol, and real I3D features."""

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sola.core.errors import AnnotationError  # noqa: E402
from sola.data.annotations import load_annotations  # noqa: E402
from sola.data.stores import open_store  # noqa: E402
from sola.data.stores.npy import NpyWriter  # noqa: E402
from sola.tal.config import load_tal_config  # noqa: E402
from sola.tal.data import snippets_to_seconds  # noqa: E402
from sola.tal.experiment import build_items, class_names, evaluate_predictions, fit_config_to_data  # noqa: E402
from sola.tal.infer import fuse_video_scores, predict_items, to_activitynet  # noqa: E402
from sola.tal.train import train_head  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
I3D = ROOT.parent / "shared" / "data" / "features" / "i3d_2048_two_stream"


def test_fuse_video_scores_top2():
    detections = {"v": {"segments": np.array([[1.0, 2.0], [3.0, 5.0]]), "scores": np.array([0.8, 0.4]),
                        "labels": np.zeros(2, dtype=np.int64)}}
    fused = fuse_video_scores(detections, {"v": {"a": 0.9, "b": 0.5, "c": 0.1}}, topk=2)["v"]
    assert [(p["label"], round(p["score"], 6), p["segment"]) for p in fused] == [
        ("a", 0.72, [1.0, 2.0]), ("a", 0.36, [3.0, 5.0]), ("b", 0.4, [1.0, 2.0]), ("b", 0.2, [3.0, 5.0])]
    with pytest.raises(AnnotationError, match="no entry for video v"):
        fuse_video_scores(detections, {"w": {"a": 1.0}})


def activitynet_fixture(tmp_path):
    """Two videos without fps (snippets spread over the duration), ActivityNet-style JSON."""
    database = {
        "v_a": {"subset": "validation", "duration": 50.0,
                "annotations": [{"label": "Jump", "segment": [10.0, 20.0]}]},
        "v_b": {"subset": "validation", "duration": 20.0,
                "annotations": [{"label": "Run", "segment": [2.0, 8.0]}, {"label": "Jump", "segment": [12.0, 16.0]}]},
    }
    (tmp_path / "gt.json").write_text(json.dumps({"database": database}))
    writer = NpyWriter(tmp_path / "feats")
    rng = np.random.default_rng(0)
    writer.write("v_a", rng.normal(size=(100, 16)).astype(np.float32))
    writer.write("v_b", rng.normal(size=(40, 16)).astype(np.float32))
    return open_store(tmp_path / "feats"), load_annotations(tmp_path / "gt.json")


def test_activitynet_items_and_class_agnostic_evaluation(tmp_path):
    store, annotations = activitynet_fixture(tmp_path)
    config = load_tal_config(ROOT / "configs" / "activitynet_tsp.yaml")
    names = class_names(annotations, config)
    assert names == ["action"]
    config = fit_config_to_data(config, store.dim(), 2)
    assert config.data.num_classes == 1 and config.data.input_dim == 16
    items = build_items(store, annotations, "validation", config, names)
    a = next(i for i in items if i["video_id"] == "v_a")
    # 100 snippets over 50 s: snippet i is centred at (i + 0.5) * 0.5 s, so 10 s -> 19.5 and 20 s -> 39.5
    assert a["segments"].tolist() == [[19.5, 39.5]] and a["labels"].tolist() == [0]
    seconds = snippets_to_seconds(a["segments"].double(), a["fps"], a["feat_stride"], a["num_frames"])
    assert seconds.tolist() == [[10.0, 20.0]]
    # perfect class-agnostic predictions score 1 once ground-truth labels are folded into "action"
    predictions = {"results": {
        "v_a": [{"label": "action", "score": 0.9, "segment": [10.0, 20.0]}],
        "v_b": [{"label": "action", "score": 0.8, "segment": [2.0, 8.0]},
                {"label": "action", "score": 0.7, "segment": [12.0, 16.0]}]}}
    result = evaluate_predictions(predictions, annotations, "validation", [0.5, 0.95], class_agnostic=True)
    assert result.mAP.tolist() == [1.0, 1.0]
    # predictions that carry real labels are folded too: the same segments score the same, labels ignored
    labelled = {"results": {v: [{**p, "label": f"class_{k}"} for k, p in enumerate(preds)]
                            for v, preds in predictions["results"].items()}}
    again = evaluate_predictions(labelled, annotations, "validation", [0.5, 0.95], class_agnostic=True)
    assert again.mAP.tolist() == [1.0, 1.0]
    with pytest.warns(UserWarning, match="not in the ground truth"):
        assert evaluate_predictions(labelled, annotations, "validation", [0.5], class_agnostic=False).average_mAP < 1


def test_to_activitynet_format():
    detections = {"v": {"segments": np.array([[1.0, 2.5]]), "scores": np.array([0.25]), "labels": np.array([1])}}
    out = to_activitynet(detections, ["a", "b"])
    assert out["results"] == {"v": [{"label": "b", "score": 0.25, "segment": [1.0, 2.5]}]}
    json.dumps(out)  # plain JSON types only


@pytest.mark.skipif(not I3D.is_dir(), reason="../shared/data/features/i3d_2048_two_stream is absent")
def test_thumos14_config_on_real_i3d_features(one_thread):
    store = open_store(I3D)
    annotations = load_annotations(I3D / "gt.json")
    config = load_tal_config(ROOT / "configs" / "thumos14_i3d.yaml",
                             {"train.epochs": 1, "train.warmup_epochs": 0, "data.train_subset": "test"})
    names = class_names(annotations, config)
    config = fit_config_to_data(config, store.dim(), len(names))
    assert config.data.input_dim == 2048
    items = build_items(store, annotations, "test", config, names)
    assert sorted(i["video_id"] for i in items) == ["highjump", "tennis26"]  # golf has no features
    jump = next(i for i in items if i["video_id"] == "highjump")
    # THUMOS14 grid (30 fps, stride 4, 16 frames): 8.86 s -> (8.86 * 30 - 8) / 4 = 64.45 snippets
    assert jump["segments"].tolist() == [pytest.approx([64.45, 110.575], abs=1e-4)]
    assert jump["feats"].shape == (164, 2048)
    result = train_head(items, config, seed=0, progress=False)  # one step of the published model
    assert np.isfinite(result.history[0]["loss"])
    detections = predict_items(result.model, items, config, progress=False)
    for item in items:
        det = detections[item["video_id"]]
        assert 0 < len(det["scores"]) <= 200
        assert det["segments"].min() >= 0 and det["segments"].max() <= item["duration"]


THUMOS_JSON = ROOT.parent / "shared" / "data" / "annotations" / "thumos14" / "thumos14.json"


@pytest.mark.skipif(not THUMOS_JSON.is_file(), reason="../shared/data/annotations/thumos14/thumos14.json is absent")
def test_thumos14_annotations_map_onto_the_i3d_grid(tmp_path):
    annotations = load_annotations(THUMOS_JSON, bad_segments="clip")
    chosen = ["video_validation_0000051", "video_validation_0000052", "video_test_0000004"]
    writer = NpyWriter(tmp_path / "feats")
    for video_id in chosen:  # as many snippets as a 4-frame stride gives at 30 fps
        snippets = int(annotations[video_id].duration * 30 / 4)
        writer.write(video_id, np.zeros((snippets, 8), dtype=np.float32))
    store = open_store(tmp_path / "feats")
    config = load_tal_config(ROOT / "configs" / "thumos14_i3d.yaml")
    names = class_names(annotations, config)
    assert len(names) == 20 and names[0] == "BaseballPitch"
    config = fit_config_to_data(config, store.dim(), len(names))
    assert config.data.num_classes == 20
    train = build_items(store, annotations, config.data.train_subset, config, names)
    test = build_items(store, annotations, config.data.test_subset, config, names)
    assert [i["video_id"] for i in train] == chosen[:2] and [i["video_id"] for i in test] == chosen[2:]
    first = train[0]
    # Billiards 67.5-75.9 s at 30 fps, stride 4, 16 frames: (67.5 * 30 - 8) / 4 = 504.25
    assert first["segments"][0].tolist() == pytest.approx([504.25, 567.25])
    assert names[int(first["labels"][0])] == "Billiards"
    assert (first["fps"], first["feat_stride"], first["num_frames"]) == (30.0, 4.0, 16.0)


TINY_HEAD = ["--config", "tal_synthetic_cpu", "--set", "model.embd_dim=16", "--set", "model.head_dim=16",
             "--set", "model.n_head=2", "--set", "train.epochs=1", "--set", "train.warmup_epochs=0",
             "--set", "train.device=cpu", "--quiet"]


def test_infer_refuses_features_of_another_kind_than_the_head_was_trained_on(synthetic_small, tmp_path, capsys,
                                                                          one_thread):
    from sola.adapt.adapter import SoLaAdapter
    from sola.adapt.transform import transform_store
    from sola.cli import main

    features, annotations = synthetic_small / "features", str(synthetic_small / "annotations.json")
    run = tmp_path / "head"
    assert main(["tal", "train", str(features), "--annotations", annotations, "--out", str(run), *TINY_HEAD]) == 0
    capsys.readouterr()

    def infer(store) -> tuple[int, str]:
        code = main(["tal", "infer", str(run), str(store), "--annotations", annotations,
                     "--out", str(tmp_path / "pred.json")])
        return code, capsys.readouterr().err

    narrow = tmp_path / "narrow"  # the same videos, half the width
    writer = NpyWriter(narrow)
    source = open_store(features)
    for video_id in source.video_ids():
        writer.write(video_id, source.read(video_id)[:, :16])
    writer.close()
    code, err = infer(narrow)
    assert code == 2 and err.count("\n") == 1 and "dim 16" in err and "dim 32" in err and str(narrow) in err
    assert not (tmp_path / "pred.json").exists()

    adapted = tmp_path / "adapted"  # SoLa features, for a head trained on the original ones
    transform_store(SoLaAdapter(32, hidden_dim=8), source, adapted, progress=False)
    code, err = infer(adapted)
    assert code == 2 and err.count("\n") == 1 and "without a SoLa adapter" in err and str(adapted) in err

    code, err = infer(features)  # the features it was trained on
    assert code == 0 and (tmp_path / "pred.json").is_file()
