import json

import pytest

from sola.demo import run_demo


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path):
    summary = run_demo(tmp_path / "demo", videos=16, epochs=1, progress=False, log=lambda s: None)
    assert summary["videos"] == 16 and summary["fit"]["epochs"] == 1
    assert summary["transform"]["written"] == 16
    assert len(summary["pictures"]) == 3
    for picture in summary["pictures"]:
        with open(picture, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["videos"] == 16
    again = run_demo(tmp_path / "demo", videos=16, epochs=1, progress=False, log=lambda s: None)
    assert again["transform"]["written"] == 0 and again["transform"]["skipped"] == 16
    assert set(again["probe"]["rows"]) == {"baseline", "SoLa"}
    assert 0.0 <= again["probe"]["rows"]["SoLa"]["lbfgs_balanced_accuracy"] <= 1.0
    # Other data: the demo's old run and features are replaced, not mixed in.
    third = run_demo(tmp_path / "demo", videos=20, epochs=1, progress=False, log=lambda s: None)
    assert third["transform"]["written"] == 20 and third["fit"]["epochs"] == 1
