"""Decoding, frame-rate resampling, resize/crop and bad-input errors of `sola.extract.video`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sola.core.errors import ExtractError
from sola.extract.video import DecodeStats, centre_crop, find_videos, read_frames, read_header, resized_size
from tests.conftest import shared_path

LEVEL_STEP = 7  # grey level of frame i is 7 * i: apart enough for YUV rounding, below white


def write_counter_video(path: Path, frames: int, fps: int, size=(96, 64)) -> Path:
    """A video whose frame i is uniformly grey at level 7 * i (so decoded frames reveal their index)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=fps)  # lossless: levels survive exactly
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for index in range(frames):
            image = np.full((size[1], size[0], 3), LEVEL_STEP * index, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def frame_indices(frames) -> list[int]:
    return [int(round(float(frame.mean()) / LEVEL_STEP)) for frame in frames]


@pytest.fixture(scope="module")
def counter_video(tmp_path_factory) -> Path:
    return write_counter_video(tmp_path_factory.mktemp("video") / "counter.mkv", frames=30, fps=12)


def test_native_rate_keeps_every_frame_in_order(counter_video):
    stats = DecodeStats()
    frames = list(read_frames(counter_video, stats=stats))
    assert frame_indices(frames) == list(range(30))
    assert frames[0].shape == (224, 224, 3) and frames[0].dtype == np.uint8
    assert stats.source_frames == stats.frames == 30
    assert stats.duration == pytest.approx(30 / 12, abs=1e-3)  # mkv stores milliseconds


def test_resampling_picks_the_nearest_source_frame(counter_video):
    # Output k at k/5 s; source j at j/12 s: nearest j = round(12 k / 5) (never a tie).
    stats = DecodeStats()
    frames = list(read_frames(counter_video, fps=5, stats=stats))
    assert frame_indices(frames) == [round(12 * k / 5) for k in range(len(frames))]
    assert len(frames) == 13 == stats.frames  # output times 0, 0.2, ..., 2.4 s < 2.5 s
    # Upsampling repeats frames: at 36 fps output k is nearest to source round(k / 3).
    up = frame_indices(read_frames(counter_video, fps=36))
    assert up == [min(round(k / 3), 29) for k in range(90)]  # the last frame lasts to 2.5 s


def test_start_skips_the_beginning(counter_video):
    assert frame_indices(read_frames(counter_video, start=1.0)) == list(range(12, 30))
    assert frame_indices(read_frames(counter_video, fps=6, start=1.0))[:3] == [12, 14, 16]
    with pytest.raises(ExtractError, match="no frame at or after 9"):
        list(read_frames(counter_video, start=9.0))


def test_resize_keeps_aspect_and_crop_is_central():
    assert resized_size(320, 240) == (341, 256)
    assert resized_size(180, 320) == (256, 455)
    assert resized_size(480, 360) == (341, 256)
    frame = np.arange(256 * 341).reshape(256, 341, 1).repeat(3, axis=2)
    crop = centre_crop(frame, 224)
    assert crop.shape == (224, 224, 3)
    assert crop[0, 0, 0] == frame[16, 58, 0]


def test_real_clip_frame_counts_follow_the_requested_rate():
    path = shared_path("videos", "v_ZNVhz7ctTq0.mp4")  # 30 fps, 420 frames, 14.0 s
    info = read_header(path)
    assert info.fps == pytest.approx(30.0) and (info.width, info.height) == (480, 360)
    stats = DecodeStats()
    assert sum(1 for _ in read_frames(path, fps=10, stats=stats)) == 140
    assert stats.source_frames == 420 and stats.duration == pytest.approx(14.0)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    import av

    root = tmp_path_factory.mktemp("bad")
    files = {"text": root / "notes.mp4", "random": root / "noise.avi", "empty": root / "empty.mkv"}
    files["text"].write_text("this is not a video\n")
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    files["empty"].write_bytes(b"")
    files["audio"] = root / "speech.m4a"
    with av.open(str(files["audio"]), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for _ in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return files


@pytest.mark.parametrize(
    "kind, message",
    [
        ("text", "cannot open as a video"),
        ("random", "cannot open as a video"),
        ("empty", "cannot open as a video"),
        ("audio", "has no video stream"),
    ],
)
def test_bad_files_raise_one_line_errors_naming_the_file(bad_files, kind, message):
    path = bad_files[kind]
    with pytest.raises(ExtractError, match=message) as caught:
        list(read_frames(path))
    text = str(caught.value)
    assert str(path) in text and "\n" not in text


def test_missing_file_error_names_it(tmp_path):
    with pytest.raises(ExtractError, match=r"missing\.mp4: no such file"):
        read_header(tmp_path / "missing.mp4")


def test_corrupted_stream_fails_mid_decode_with_the_frame_count(tmp_path):
    data = bytearray(shared_path("videos", "tennis26.mp4").read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 40_000, 7):
        data[i] ^= 0xFF  # damage a stretch of coded frames, keep the header
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    with pytest.raises(ExtractError, match=r"damaged\.mp4: decoding failed after \d+ frames"):
        list(read_frames(path, fps=5))


def test_find_videos_expands_directories_and_reports_missing_paths(tmp_path, counter_video):
    (tmp_path / "b.mkv").write_bytes(counter_video.read_bytes())
    (tmp_path / "a.MP4").write_bytes(b"")
    (tmp_path / "readme.txt").write_text("x")
    videos, problems = find_videos([tmp_path, tmp_path / "nope.mp4", tmp_path / "readme.txt"])
    assert [p.name for p in videos] == ["a.MP4", "b.mkv", "readme.txt"]  # explicit files kept as given
    assert len(problems) == 1 and "nope.mp4: no such file" in problems[0][1]
