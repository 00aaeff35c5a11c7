import hashlib
import json

import numpy as np

from sola.data.synthetic import SyntheticConfig, gaussian_smooth, write_synthetic


def files_digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_seeded_and_deterministic(tmp_path):
    config = SyntheticConfig(videos=6, dim=16, classes=3, min_length=30, max_length=60, seed=3)
    write_synthetic(tmp_path / "a", config, progress=False)
    write_synthetic(tmp_path / "b", config, progress=False)
    assert files_digest(tmp_path / "a") == files_digest(tmp_path / "b")
    config.seed = 4
    write_synthetic(tmp_path / "c", config, progress=False)
    assert files_digest(tmp_path / "a") != files_digest(tmp_path / "c")


def test_annotations_match_features(synthetic_small):
    database = json.loads((synthetic_small / "annotations.json").read_text())["database"]
    assert len(database) == 24
    assert {v["subset"] for v in database.values()} == {"training", "validation"}
    assert sum(v["subset"] == "validation" for v in database.values()) == 5  # round(24 * 0.2)
    for video_id, entry in database.items():
        features = np.load(synthetic_small / "features" / f"{video_id}.npy")
        assert features.shape[1] == 32 and features.dtype == np.float32
        seconds_per_snippet = entry["feat_stride"] / entry["fps"]
        assert entry["duration"] == round(len(features) * seconds_per_snippet, 6)
        assert entry["annotations"]
        previous_end = 0.0
        for action in entry["annotations"]:
            start, end = action["segment"]
            assert previous_end <= start < end <= entry["duration"]
            assert action["label"] == f"class_{action['label_id']:02d}"
            previous_end = end


def _snippets(root, database, want_action):
    """Per video: (features, per-snippet class or -1)."""
    out = {}
    for video_id, entry in database.items():
        features = np.load(root / "features" / f"{video_id}.npy")
        labels = np.full(len(features), -1)
        step = entry["feat_stride"] / entry["fps"]
        for action in entry["annotations"]:
            labels[round(action["segment"][0] / step): round(action["segment"][1] / step)] = action["label_id"]
        out[video_id] = (features, labels)
    return out


def test_context_dominates_but_classes_are_present(synthetic_small):
    """The task discrepancy: snippets of one video look alike whatever happens in them, yet class evidence
    is there once the video's context is removed."""
    database = json.loads((synthetic_small / "annotations.json").read_text())["database"]
    videos = _snippets(synthetic_small, database, True)

    def unit(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    same_video_other_class, other_video_same_class = [], []
    centred_same, centred_other = [], []
    ids = sorted(videos)
    for a_index, a in enumerate(ids):
        fa, la = videos[a]
        ua, ca = unit(fa), unit(fa - fa.mean(0))
        for cls in set(la[la >= 0].tolist()):
            inside = ua[la == cls]
            others = ua[(la >= 0) & (la != cls)]
            if len(others):
                same_video_other_class.append(float((inside @ others.T).mean()))
            for b in ids[a_index + 1:]:
                fb, lb = videos[b]
                if (lb == cls).any():
                    other_video_same_class.append(float((inside @ unit(fb)[lb == cls].T).mean()))
                    cb = unit(fb - fb.mean(0))
                    centred_same.append(float((ca[la == cls] @ cb[lb == cls].T).mean()))
                    other_cls = (lb >= 0) & (lb != cls)
                    if other_cls.any():
                        centred_other.append(float((ca[la == cls] @ cb[other_cls].T).mean()))
    assert np.mean(same_video_other_class) > np.mean(other_video_same_class) + 0.2
    assert np.mean(centred_same) > np.mean(centred_other) + 0.1


def test_gaussian_smooth_preserves_constant_interior():
    x = np.ones((50, 3))
    smoothed = gaussian_smooth(x, 2.0)
    assert smoothed.shape == x.shape
    np.testing.assert_allclose(smoothed[10:40], 1.0, atol=1e-9)
    assert smoothed[0, 0] < 0.75  # zero padding at the ends
