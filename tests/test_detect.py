"""`sola detect`: real clips -> I3D features -> a head trained on them -> detections and timelines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sola.cli import main
from sola.evaluate.metrics import segment_iou
from tests.conftest import shared_path

# The clips' ground truth (../shared/README.md): ActivityNet labels and BBFormer's gt.json.
GROUND_TRUTH = {
    "highjump": (24.2, 30.0, [("HighJump", 8.86, 15.01)]),
    "tennis26": (11.3, 30.0, [("TennisSwing", 2.0, 4.0), ("TennisSwing", 4.8, 7.0), ("TennisSwing", 7.5, 10.0)]),
    "v_GGSY1Qvo990": (18.1, 19.62, [("Clean and jerk", 5.82, 16.20)]),
    "v_ZNVhz7ctTq0": (14.0, 30.0, [("Walking the dog", 0.33, 14.05)]),
}
HEAD = ["--config", "tal_splice_cpu", "--set", "data.test_subset=training", "--set", "data.max_seq_len=64",
        "--set", "train.batch_size=4", "--set", "data.crop_ratio=null", "--quiet"]


def write_annotations(path: Path, videos=GROUND_TRUTH) -> Path:
    database = {video: {"subset": "training", "duration": duration, "fps": fps,
                        "annotations": [{"label": label, "segment": [start, end]} for label, start, end in segments]}
                for video, (duration, fps, segments) in videos.items()}
    path.write_text(json.dumps({"version": "test", "database": database}))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Features of the shared clips extracted by `sola extract`, and a small head trained on them."""
    root = tmp_path_factory.mktemp("detect")
    videos = root / "videos"
    videos.mkdir()
    for name in GROUND_TRUTH:
        (videos / f"{name}.mp4").symlink_to(shared_path("videos", f"{name}.mp4"))
    annotations = write_annotations(root / "annotations.json")
    out = root / "out"
    assert main(["extract", str(videos), "--out", str(out / "features"), "--quiet"]) == 0
    assert main(["tal", "train", str(out / "features"), "--annotations", str(annotations), "--out",
                 str(root / "head"), "--set", "train.epochs=40", *HEAD]) == 0
    return {"root": root, "videos": videos, "annotations": annotations, "out": out, "head": root / "head"}


@pytest.mark.slow
def test_detect_finds_the_annotated_actions(trained, capsys):
    (trained["videos"] / "broken.mp4").write_bytes(b"not a video")
    code = main(["detect", str(trained["videos"]), "--head", str(trained["head"]), "--annotations",
                 str(trained["annotations"]), "--out", str(trained["out"]), "--quiet"])
    (trained["videos"] / "broken.mp4").unlink()
    captured = capsys.readouterr()
    assert code == 1 and "broken.mp4" in captured.err  # reported and skipped, the others detected
    predictions = json.loads((trained["out"] / "detections.json").read_text())
    assert set(predictions["results"]) == set(GROUND_TRUTH)
    for video, (_, _, segments) in GROUND_TRUTH.items():
        entries = sorted(predictions["results"][video], key=lambda e: -e["score"])[:5]  # the video's top 5
        for label, start, end in segments:
            best = max((segment_iou(start, end, *e["segment"]).item() for e in entries if e["label"] == label),
                       default=0.0)
            assert best >= 0.5, f"{video}: no top-5 {label} detection overlaps {start}-{end} s (best tIoU {best:.2f})"
    for video in GROUND_TRUTH:
        assert (trained["out"] / "timelines" / f"{video}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "TennisSwing" in captured.out and "detections.json" in captured.out  # the top detections are printed


@pytest.mark.slow
def test_detect_reuses_extracted_features_and_applies_the_adapter(trained, tmp_path):
    import torch

    from sola.adapt.adapter import SoLaAdapter, save_adapter
    from sola.data.annotations import load_annotations
    from sola.experiments.detect import detect_videos
    from sola.tal.features import read_features

    class NoEncoder:  # the features are cached: encoding anything would be a bug
        device = torch.device("cpu")

        def encode(self, clips):
            raise AssertionError("sola detect re-encoded a video whose features were cached")

    adapter = SoLaAdapter(1024)
    with torch.no_grad():
        adapter.alpha.fill_(0.3)
    adapter_file = save_adapter(adapter, tmp_path / "adapter.safetensors")
    from sola.adapt.transform import transform_store
    from sola.data.stores import open_store

    transform_store(adapter, open_store(trained["out"] / "features"), tmp_path / "sola_features", progress=False)
    assert main(["tal", "train", str(tmp_path / "sola_features"), "--annotations", str(trained["annotations"]),
                 "--out", str(tmp_path / "head"), "--set", "train.epochs=2", *HEAD]) == 0
    assert read_features(tmp_path / "head")["adapter"] is not None  # the head knows its features were adapted
    summary = detect_videos(trained["videos"], tmp_path / "head", trained["out"], adapter=adapter_file,
                            annotations=load_annotations(trained["annotations"]), encoder=NoEncoder(), progress=False)
    assert not summary.failed and len(summary.predictions["results"]) == len(GROUND_TRUTH)
    first = sorted(GROUND_TRUTH)[0]
    original = np.load(trained["out"] / "features" / f"{first}.npy")
    adapted = np.load(trained["out"] / "features_sola" / f"{first}.npy")
    assert adapted.shape == original.shape and not np.allclose(adapted, original)


def test_head_of_other_features_is_one_line_exit_2(tmp_path, capsys):
    features = shared_path("features", "i3d_2048_two_stream")
    store = tmp_path / "two_stream"
    store.mkdir()
    for name in ("highjump", "tennis26"):
        (store / f"{name}.npy").symlink_to(features / f"{name}.npy")
    annotations = write_annotations(tmp_path / "ann.json", {k: GROUND_TRUTH[k] for k in ("highjump", "tennis26")})
    assert main(["tal", "train", str(store), "--annotations", str(annotations), "--out", str(tmp_path / "head"),
                 "--set", "train.epochs=1", "--set", "train.warmup_epochs=0", *HEAD]) == 0
    capsys.readouterr()
    code = main(["detect", str(tmp_path), "--head", str(tmp_path / "head"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "2048-d" in err and "1024-d" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # refused before any video was decoded


def test_adapter_the_head_was_not_trained_with_is_refused(tmp_path):
    from sola.core.errors import ConfigError
    from sola.tal.features import check_detectable

    record = {"dim": 1024, "encoder": "i3d_kinetics400_rgb", "window": 16, "stride": 16, "fps_rule": "own",
              "adapter": None}
    extracted = {"dim": 1024, "encoder": "i3d_kinetics400_rgb"}
    check_detectable(record, "head", extracted, None)  # the same features: accepted
    with pytest.raises(ConfigError, match="drop --adapter"):
        check_detectable(record, "head", extracted, "ab" * 32)
    with pytest.raises(ConfigError, match="pass that adapter"):
        check_detectable({**record, "adapter": "cd" * 32}, "head", extracted, None)
    with pytest.raises(ConfigError, match="pass the adapter"):
        check_detectable({**record, "adapter": "cd" * 32}, "head", extracted, "ab" * 32)
