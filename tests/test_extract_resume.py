"""`extract_videos` bookkeeping with a stand-in encoder: interrupt, resume, bad videos, threads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sola.data.stores.npy import NpyStore
from sola.extract.clips import num_snippets
from sola.extract.config import ExtractConfig
from sola.extract.extract import METADATA_NAME, extract_videos, load_metadata
from tests.test_extract_video import write_counter_video


class MeanEncoder:
    """Feature = mean grey level of the clip, repeated 1024 times; can raise on the n-th batch."""

    device = torch.device("cpu")

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.calls, self.interrupt_at = 0, interrupt_at

    def encode(self, clips: np.ndarray):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        level = clips.reshape(len(clips), -1).mean(axis=1, dtype=np.float64).astype(np.float32)  # (B,)
        return np.repeat(level[:, None], 1024, axis=1), np.zeros((len(clips), 400), np.float32)


def grid(**extract) -> ExtractConfig:
    """The default extraction config with these `extract` keys replaced."""
    return ExtractConfig.from_dict({"extract": extract})


@pytest.fixture()
def videos(tmp_path):
    root = tmp_path / "videos"
    root.mkdir()
    for name, frames in [("a", 30), ("b", 20), ("c", 25)]:
        write_counter_video(root / f"{name}.mkv", frames=frames, fps=12)
    (root / "broken.mp4").write_bytes(b"\x00" * 100)
    return root


def test_interrupted_run_keeps_finished_videos_and_the_rerun_completes(videos, tmp_path):
    out = tmp_path / "features"
    with pytest.raises(KeyboardInterrupt):
        # one decoding thread and batch 1: a (30 frames at 12 fps, window 8) is 4 batches, then b starts
        extract_videos(videos, out, grid(window=8, stride=8, batch_size=1, workers=1),
                       encoder=MeanEncoder(interrupt_at=6), progress=False)  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", METADATA_NAME]  # no stray temporaries
    assert list(load_metadata(out)["videos"]) == ["a"]
    first = np.load(out / "a.npy")

    summary = extract_videos(videos, out, grid(window=8, stride=8, batch_size=1, workers=3), encoder=MeanEncoder(),
                             progress=False)
    assert summary.skipped == ["a"] and sorted(summary.extracted) == ["b", "c"]
    assert [path.endswith("broken.mp4") for path, _ in summary.failed] == [True]
    np.testing.assert_array_equal(np.load(out / "a.npy"), first)
    store = NpyStore(out)
    assert store.video_ids() == ["a", "b", "c"]
    metadata = json.loads((out / METADATA_NAME).read_text())
    for video_id, frames in [("a", 30), ("b", 20), ("c", 25)]:
        info = metadata["videos"][video_id]
        assert info["num_frames"] == frames and info["num_snippets"] == num_snippets(frames, 8, 8)
        assert store.shape(video_id) == (info["num_snippets"], 1024)
        # Clip i of a counter video holds frames 8i..8i+7 (last one padded): its mean grey level.
        levels = store.read(video_id)[:, 0]
        expected = [np.mean([7 * min(f, frames - 1) for f in range(8 * i, 8 * i + 8)]) for i in range(len(levels))]
        np.testing.assert_allclose(levels, expected, atol=3.0)  # YUV rounding; a 1-frame shift moves 7


def test_logits_output_and_a_fresh_directory_with_only_bad_videos(videos, tmp_path):
    summary = extract_videos(videos / "broken.mp4", tmp_path / "none", encoder=MeanEncoder(), progress=False)
    assert summary.extracted == [] and len(summary.failed) == 1 and not summary.ok
    assert load_metadata(tmp_path / "none")["videos"] == {}
    logits = extract_videos(videos / "b.mkv", tmp_path / "logits", grid(output="logits"), encoder=MeanEncoder(),
                            progress=False)
    assert logits.extracted == ["b"] and np.load(tmp_path / "logits" / "b.npy").shape == (2, 400)
