"""Items of the TAL head: seconds <-> snippets, resizing, random truncation, padding."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sola.core.errors import AnnotationError  # noqa: E402
from sola.data.annotations import SnippetGrid  # noqa: E402
from sola.tal.data import (check_item, make_item, pad_batch, random_truncate, resize_item,  # noqa: E402
                           seconds_to_snippets, snippets_to_seconds)


def test_snippet_convention_matches_annotations_grid():
    grid = SnippetGrid.fixed(fps=30.0, feat_stride=4, num_frames=16)
    index = np.array([0.0, 1.5, 100.0])
    assert snippets_to_seconds(index, 30.0, 4, 16) == pytest.approx(grid.to_seconds(index))
    assert seconds_to_snippets(grid.to_seconds(index), 30.0, 4, 16) == pytest.approx(index)


def test_make_item_maps_seconds_to_snippets():
    item = make_item("v", np.zeros((100, 8)), [[10.0, 20.0]], [2], fps=10.0, feat_stride=5.0, num_frames=10.0)
    # snippet t is centred at (5 t + 5) / 10 s, so 10 s -> t = 19 and 20 s -> t = 39
    assert item["segments"].tolist() == [[19.0, 39.0]]
    assert item["labels"].tolist() == [2] and item["feats"].dtype == torch.float32
    with pytest.raises(AnnotationError, match="fps"):
        make_item("v", np.zeros((4, 8)), [], [], fps=0.0, feat_stride=1.0, num_frames=1.0)


def test_resize_keeps_segments_in_seconds():
    item = make_item("v", np.random.default_rng(0).normal(size=(300, 8)), [[12.0, 40.0]], [0], fps=25.0,
                     feat_stride=8.0, num_frames=16.0, duration=96.0)
    resized = resize_item(item, 64)
    assert resized["feats"].shape == (64, 8)
    seconds = snippets_to_seconds(resized["segments"].double(), resized["fps"], resized["feat_stride"],
                                  resized["num_frames"])
    assert seconds.numpy()[0] == pytest.approx(np.array([12.0, 40.0]), abs=1e-4)
    # the resized grid covers the same frames as the original one
    assert 64 * resized["feat_stride"] == pytest.approx(299 * 8 + 16)


def test_random_truncation_respects_length_and_threshold():
    rng = np.random.default_rng(0)
    item = make_item("v", np.arange(1000 * 2, dtype=np.float32).reshape(1000, 2), [[100, 300], [600, 610]], [0, 1],
                     fps=1.0, feat_stride=1.0, num_frames=0.0)
    for _ in range(50):
        cut = random_truncate(item, 256, 0.5, [0.9, 1.0], rng)
        length = cut["feats"].shape[0]
        assert length == 256
        start = int(cut["feats"][0, 0].item()) // 2  # the features record where the window starts
        assert len(cut["labels"]) >= 1  # a window keeping an action is found
        for (s, e), label in zip(cut["segments"].tolist(), cut["labels"].tolist()):
            original = [[100, 300], [600, 610]][label]
            assert 0 <= s < e <= length
            assert (e - s) / (original[1] - original[0]) >= 0.5
            assert s + start >= original[0] - 1e-4 and e + start <= original[1] + 1e-4
    short = make_item("s", np.zeros((100, 2)), [[10, 20]], [0], fps=1.0, feat_stride=1.0, num_frames=0.0)
    lengths = {random_truncate(short, 256, 0.5, [0.9, 1.0], rng)["feats"].shape[0] for _ in range(40)}
    assert lengths <= set(range(90, 101)) and len(lengths) > 3  # the crop ratio of short videos
    assert random_truncate(short, 256, 0.5, None, rng) is short


def test_pad_batch_and_check_item():
    feats, mask = pad_batch([torch.ones(5, 3), torch.ones(40, 3)], 32)
    assert feats.shape == (2, 64, 3) and mask.sum(1).tolist() == [5, 40]
    assert feats[0, 5:].abs().sum() == 0
    item = make_item("v", np.zeros((10, 3)), [[1, 2]], [4], fps=1.0, feat_stride=1.0, num_frames=0.0)
    with pytest.raises(AnnotationError, match="data.input_dim"):
        check_item(item, input_dim=8, num_classes=5)
    with pytest.raises(AnnotationError, match="data.num_classes"):
        check_item(item, input_dim=3, num_classes=3)
