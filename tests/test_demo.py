import json

import pytest

from sola.experiments.demo import run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path):
    lines = []
    summary = run_demo(tmp_path / "demo", num_videos=16, epochs=1, progress=False, log=lines.append)
    assert summary["videos"] == 16 and summary["fit"]["epochs"] == 1
    # A head of one epoch learns nothing: no verdict is drawn from it; a kept identity is said in words.
    assert summary["verdict"] and summary["verdict"][0].startswith("avg mAP (sola vs baseline): the head learned nothing")
    kept = "      on this data no checkpoint beat the original features; the original is kept" in lines
    assert kept == (summary["selected"] == "identity") == summary["kept_original"]
    # the adapter as fitted is shown beside the selected one when selection discarded it (here: the identity kept)
    assert summary["fitted_shown"] == kept
    modes = ["baseline", "sola", "fitted"] if kept else ["baseline", "sola"]
    assert summary["detection"]["modes"] == modes
    assert all("no verdict" in line for line in summary["verdict"]) and len(summary["verdict"]) == len(modes) - 1
    assert all(f"verdict: {line}" in lines for line in summary["verdict"])
    if kept:
        assert any(line.startswith("the original features were kept") for line in lines)
        assert "The original features were kept" in (tmp_path / "demo" / "compare" / "compare.md").read_text()
    # a kept identity is not copied (its output would equal the input): the SoLa features are the originals
    assert summary["transform"]["written"] == (0 if kept else 16)
    assert summary["sola_features"] == str(tmp_path / "demo" / ("data/features" if kept else "sola_features"))
    selection = json.loads((tmp_path / "demo" / "run" / "select.json").read_text())
    assert summary["selected"] == selection["best"] and selection["subset"] == "training"
    assert set(selection["rows"]) == {"identity", "epoch_0001"}
    assert len(summary["pictures"]) == 3
    for picture in summary["pictures"]:
        with open(picture, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["videos"] == 16
    assert summary["reports"] == [str(tmp_path / "demo" / "compare" / "report.html"),
                                  str(tmp_path / "demo" / "run" / "report.html")]
    compare_page = (tmp_path / "demo" / "compare" / "report.html").read_text()
    assert 'id="map-table"' in compare_page and 'id="error-table"' in compare_page
    assert ("The original features were kept" in compare_page) == kept  # atop the report, before the verdict
    # the sola heads are the baseline's when the original features were kept: their figures are not drawn twice
    assert ("Not drawn again: <code>sola</code> (its heads are <code>baseline</code>" in compare_page) == kept
    assert "No predictions kept" not in compare_page and "No TSM picture" not in (
        tmp_path / "demo" / "run" / "report.html").read_text()
    again = run_demo(tmp_path / "demo", num_videos=16, epochs=1, progress=False, log=lambda s: None)
    assert again["transform"]["written"] == 0 and again["transform"]["skipped"] == (0 if kept else 16)
    assert set(again["probe"]["rows"]) == {"baseline", "SoLa", *(["fitted"] if kept else [])}
    assert again["detection"]["modes"] == modes
    assert again["detection"]["rows"]["sola"]["probe_balanced_accuracy"] == again["probe"]["rows"]["SoLa"][
        "lbfgs_balanced_accuracy"]
    assert (tmp_path / "demo" / "compare" / "compare.md").is_file()
    assert 0.0 <= again["probe"]["rows"]["SoLa"]["lbfgs_balanced_accuracy"] <= 1.0
    # Other data: the demo's old run and features are replaced, not mixed in.
    third = run_demo(tmp_path / "demo", num_videos=20, epochs=1, progress=False, log=lambda s: None)
    assert third["transform"]["written"] == (0 if third["kept_original"] else 20) and third["fit"]["epochs"] == 1


def test_head_results_of_another_adapter_are_forgotten(tmp_path):
    import torch

    from sola.adapt.adapter import SoLaAdapter
    from sola.experiments.demo import _forget_stale_heads

    results = tmp_path / "compare" / "results"
    results.mkdir(parents=True)
    torch.manual_seed(0)
    first, second = SoLaAdapter(8, 4), SoLaAdapter(8, 4)
    with torch.no_grad():
        second.alpha.fill_(1.0)
    _forget_stale_heads(tmp_path, {"sola": first, "fitted": None})
    for name in ("sola_seed0.json", "fitted_seed0.json", "baseline_seed0.json"):
        (results / name).write_text("{}")
    _forget_stale_heads(tmp_path, {"sola": first, "fitted": None})  # the same adapters: every result is kept
    assert sorted(path.name for path in results.iterdir()) == ["baseline_seed0.json", "fitted_seed0.json",
                                                               "sola_seed0.json"]
    _forget_stale_heads(tmp_path, {"sola": second, "fitted": first})  # another selection: both modes are redone
    assert sorted(path.name for path in results.iterdir()) == ["baseline_seed0.json"]


@pytest.mark.slow
def test_demo_on_real_videos(tmp_path):
    from tests.conftest import shared_path

    clip = shared_path("videos", "v_ZNVhz7ctTq0.mp4")  # 14 s at 30 fps: 27 snippets of 16 frames
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / clip.name).symlink_to(clip)
    (videos / "broken.mp4").write_bytes(b"not a video")
    logs = []
    summary = run_demo(tmp_path / "demo", epochs=1, videos_dir=videos, progress=False, log=logs.append)
    assert summary["videos"] == 1 and summary["probe"] is None
    assert any("broken.mp4" in line for line in logs)  # reported and skipped
    features = tmp_path / "demo" / "features" / "v_ZNVhz7ctTq0.npy"
    import numpy as np

    from sola.extract import load_metadata

    count = load_metadata(tmp_path / "demo" / "features")["videos"]["v_ZNVhz7ctTq0"]["num_snippets"]
    assert count >= 23 and np.load(features).shape == (count, 1024)
    assert summary["transform"]["written"] == 1
    with open(summary["pictures"][0], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert summary["reports"] == [str(tmp_path / "demo" / "run" / "report.html")]  # the fit's: no comparison
