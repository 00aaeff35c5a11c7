import hashlib
import json

import numpy as np
import pytest

from sola.cli import main
from sola.core.errors import ConfigError
from sola.data.annotations import grid_for, load_annotations, snippet_labels
from sola.data.splice import SpliceConfig, clip_class, parse_clip_range, splice_store
from sola.data.stores import open_store
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def gym_clips():
    return open_store(shared_path("features", "gym_clips"))


@pytest.fixture(scope="module")
def spliced(gym_clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("splice") / "bench"
    summary = splice_store(gym_clips, out, SpliceConfig(videos=24, actions=6, seed=3), progress=False)
    return out, summary


def test_clip_class_and_range():
    assert clip_class("barbell_biceps_curl_12") == "barbell_biceps_curl"
    assert clip_class("push-up_3") == "push-up"
    assert clip_class("plain") == "plain"
    assert parse_clip_range("4:9") == (4, 9) and parse_clip_range("5") == (5, 5)
    with pytest.raises(ConfigError, match="A:B"):
        parse_clip_range("a:b")


def test_training_and_validation_clips_are_disjoint(spliced):
    out, summary = spliced
    database = json.loads((out / "annotations.json").read_text())["database"]
    used = {"training": set(), "validation": set(), "holdout": set()}
    for entry in database.values():
        used[entry["subset"]].update(entry["clips"])
    assert all(used.values())
    assert not used["training"] & used["validation"]
    assert not used["training"] & used["holdout"] and not used["validation"] & used["holdout"]
    assert sum(e["subset"] == "validation" for e in database.values()) == summary["validation_videos"] == 6
    assert sum(e["subset"] == "holdout" for e in database.values()) == summary["holdout_videos"] == 4  # 0.2 x 18


def test_features_are_the_clips_concatenated_and_annotations_line_up(spliced, gym_clips):
    out, summary = spliced
    raw = json.loads((out / "annotations.json").read_text())
    actions = set(raw["actions"])
    assert len(actions) == 6 and not actions & set(raw["background"])
    annotations = load_annotations(out / "annotations.json")
    store = open_store(out / "features")
    for video_id, entry in raw["database"].items():
        parts = [np.asarray(gym_clips.read(clip)) for clip in entry["clips"]]
        features = store.read(video_id)
        np.testing.assert_array_equal(features, np.concatenate(parts))  # bytes as published, dtype kept
        expected = np.concatenate([np.full(len(p), clip_class(c) in actions) for p, c in zip(parts, entry["clips"])])
        video = annotations[video_id]
        labels = snippet_labels(video, len(features), grid_for(video, len(features)))
        np.testing.assert_array_equal(labels.action, expected)  # the action snippets are the action clips'
        assert [a["clip"] for a in entry["annotations"]] == [c for c in entry["clips"] if clip_class(c) in actions]
        for first, second in zip(entry["annotations"], entry["annotations"][1:]):
            # instances of one class never touch: they would read as one segment
            assert first["segment"][1] < second["segment"][0] or first["label"] != second["label"]


def test_without_holdout_two_subsets(gym_clips, tmp_path):
    splice_store(gym_clips, tmp_path / "b", SpliceConfig(videos=8, actions=3, holdout_fraction=0.0), progress=False)
    database = json.loads((tmp_path / "b" / "annotations.json").read_text())["database"]
    assert {e["subset"] for e in database.values()} == {"training", "validation"}


def test_deterministic_and_refuses_a_used_directory(gym_clips, tmp_path):
    config = SpliceConfig(videos=6, actions=3, min_clips=3, max_clips=5, seed=1)
    splice_store(gym_clips, tmp_path / "a", config, progress=False)
    splice_store(gym_clips, tmp_path / "b", config, progress=False)
    digest = lambda root: {p.name: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
                           for p in sorted(root.rglob("*.npy"))}
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    with pytest.raises(ConfigError, match="not empty"):
        splice_store(gym_clips, tmp_path / "a", config, progress=False)


def test_cli_errors_are_one_line(gym_clips, tmp_path, capsys):
    clips = str(gym_clips.path)
    assert main(["splice", clips, str(tmp_path / "x"), "--actions", "30", "--quiet"]) == 2
    assert "lower --actions" in capsys.readouterr().err
    assert main(["splice", clips, str(tmp_path / "y"), "--clips-per-video", "5:2", "--quiet"]) == 2
    assert "--clips-per-video" in capsys.readouterr().err
    assert main(["splice", clips, str(tmp_path / "z"), "--videos", "4", "--actions", "2", "--quiet"]) == 0
    assert "wrote 4 videos" in capsys.readouterr().out


def test_selection_measures_on_the_holdout_subset(spliced, tmp_path):
    from sola.adapt.fit import fit_adapter
    from sola.core.config import load_config
    from sola.core.errors import AnnotationError
    from sola.evaluate.select import select_checkpoint

    out, _ = spliced
    store = open_store(out / "features")
    annotations = load_annotations(out / "annotations.json")
    config = load_config(None, {"adapter.hidden_dim": 16, "matching.projector_dim": 16, "fit.epochs": 1})
    fit_adapter(store, config, tmp_path / "run", progress=False, log=lambda s: None)
    table = select_checkpoint(tmp_path / "run", store, annotations, subset="training", heldout_subset="holdout")
    held = set(table["heldout_videos"])
    assert held == {v for v in annotations.keys() if annotations[v].subset == "holdout"}
    assert table["train_videos"] == 14 and table["val_subset"] == "holdout"
    assert "measured on 4 videos of holdout" in table["message"]
    with pytest.raises(AnnotationError, match="another subset"):
        select_checkpoint(tmp_path / "run", store, annotations, subset="training", heldout_subset="training")
