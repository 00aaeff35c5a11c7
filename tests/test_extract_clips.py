"""Snippet geometry: clip starts, tail padding and the snippet count formula."""

from __future__ import annotations

import numpy as np
import pytest

from sola.core.errors import ExtractError
from sola.extract.clips import batched, iter_clips, num_snippets


def clips_of(frames: int, window: int, stride: int) -> list[list[int]]:
    """Frame indices of every clip, using scalar 'frames' that carry their index."""
    stream = (np.array([i]) for i in range(frames))
    return [clip[:, 0].tolist() for clip in iter_clips(stream, window, stride)]


def test_non_overlapping_clips_pad_the_last_one_with_the_final_frame():
    assert clips_of(10, 4, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 9, 9]]
    assert clips_of(8, 4, 4) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert clips_of(2, 4, 4) == [[0, 1, 1, 1]]  # shorter than one window


def test_overlapping_clips_stop_at_the_first_window_reaching_the_end():
    assert clips_of(10, 4, 2) == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]
    assert clips_of(11, 4, 2) == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9], [8, 9, 10, 10]]


def test_gapped_clips_skip_frames_between_windows():
    assert clips_of(10, 2, 4) == [[0, 1], [4, 5], [8, 9]]
    assert clips_of(7, 2, 4) == [[0, 1], [4, 5]]  # frame 6 lies in a gap: no clip starts there
    assert clips_of(9, 2, 4) == [[0, 1], [4, 5], [8, 8]]


@pytest.mark.parametrize("window, stride", [(16, 16), (16, 4), (16, 8), (8, 16), (1, 1), (5, 3)])
def test_snippet_count_formula_matches_the_clips(window, stride):
    for frames in range(0, 70):
        clips = clips_of(frames, window, stride)
        assert len(clips) == num_snippets(frames, window, stride), (frames, window, stride)
        if clips:
            assert [clip[0] for clip in clips] == [i * stride for i in range(len(clips))]
            if stride <= window:
                assert sorted({i for clip in clips for i in clip}) == list(range(frames))


def test_bad_geometry_is_an_error():
    with pytest.raises(ExtractError, match="window and stride must be at least 1"):
        list(iter_clips(iter([]), 0, 4))


def test_batches_stack_consecutive_clips_and_keep_the_remainder():
    clips = [np.full((2, 1), i) for i in range(5)]
    shapes = [batch.shape for batch in batched(clips, 2)]
    assert shapes == [(2, 2, 1), (2, 2, 1), (1, 2, 1)]
    assert [int(b[:, 0, 0].sum()) for b in batched(clips, 2)] == [1, 5, 4]
