"""`sola ablate`: grid parsing, key routing, channel halves, an end-to-end grid that resumes, the CLI."""

import json

import numpy as np
import pytest

from sola.cli import main
from sola.core.config import load_config
from sola.core.errors import ConfigError
from sola.core.stats import paired_difference
from sola.data.annotations import load_annotations
from sola.data.stores import open_store
from sola.experiments.ablate import PRESETS, ablate, parse_grid, split_point, stream_store
from sola.tal.config import load_tal_config

TINY_TAL = {"train.epochs": 1, "train.warmup_epochs": 1, "model.embd_dim": 16, "model.head_dim": 16}
TINY_SOLA = {"adapter.hidden_dim": 16, "matching.projector_dim": 16, "fit.epochs": 2, "fit.batch_size": 16,
             "fit.checkpoint_every": 1}


def test_parse_grid_is_the_product_of_yaml_values():
    points = parse_grid(["adapter.kernel_size=1,3", "mode=sola,unified"])
    assert points == [{"adapter.kernel_size": 1, "mode": "sola"}, {"adapter.kernel_size": 1, "mode": "unified"},
                      {"adapter.kernel_size": 3, "mode": "sola"}, {"adapter.kernel_size": 3, "mode": "unified"}]
    assert parse_grid(["fit.lr=1e-4"]) == [{"fit.lr": 1e-4}]
    for bad in (["adapter.kernel_size"], ["=1,2"], ["fit.lr="], ["fit.lr=1", "fit.lr=2"]):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)


def test_points_route_keys_to_their_config():
    assert split_point({"mode": "unified", "features": "rgb", "adapter.kernel_size": 3, "train.epochs": 2}) == (
        "unified", "rgb", {"adapter.kernel_size": 3}, {"train.epochs": 2})
    for bad, match in (({"mode": "joint"}, "mode="), ({"features": "depth"}, "features="),
                       ({"kernel": 3}, "grid key 'kernel'")):
        with pytest.raises(ConfigError, match=match):
            split_point(bad)
    assert [p["adapter.kernel_size"] for p in PRESETS["receptive-field"]] == [1, 3, 5, 9, 5]
    assert PRESETS["receptive-field"][-1]["adapter.dilation"] == 2


def test_channel_halves_of_a_two_stream_store(synthetic_small, tmp_path):
    store = open_store(synthetic_small / "features")  # 32 channels: "RGB" 0-15, "flow" 16-31
    video = store.video_ids()[0]
    rgb, flow = stream_store(store, "rgb", tmp_path), stream_store(store, "flow", tmp_path)
    assert np.array_equal(rgb.read(video), store.read(video)[:, :16])
    assert np.array_equal(flow.read(video), store.read(video)[:, 16:])
    assert stream_store(store, "both", tmp_path) is store
    odd = tmp_path / "odd"
    odd.mkdir()
    np.save(odd / "a.npy", np.zeros((5, 7), np.float32))
    with pytest.raises(ConfigError, match="7 channels"):
        stream_store(open_store(odd), "rgb", tmp_path)


@pytest.mark.slow
def test_a_grid_against_the_original_resumes_per_point_and_seed(synthetic_small, tmp_path, monkeypatch):
    store = open_store(synthetic_small / "features")
    annotations = load_annotations(synthetic_small / "annotations.json")
    tal = load_tal_config("tal_synthetic_cpu", TINY_TAL)
    points = [{"adapter.kernel_size": 1}, {"adapter.kernel_size": 3}, {"mode": "unified"}]
    table = ablate(store, annotations, tal, points, tmp_path / "abl", seeds=2,
                   sola_config=load_config(None, TINY_SOLA), log=lambda line: None)
    # One original row per seed, shared by the three points (same features and head settings).
    assert len(list((tmp_path / "abl" / "original").iterdir())) == 1
    cells = {}
    for path in (tmp_path / "abl" / "points").glob("*/seed*/result.json"):
        cells.setdefault(path.parent.parent.name, []).append(json.loads(path.read_text()))
    assert len(cells) == 3 and all(len(v) == 2 for v in cells.values())
    originals = [json.loads((next((tmp_path / "abl" / "original").iterdir()) / f"seed{s}.json").read_text())
                 for s in (0, 1)]
    first = table["rows"][0]
    adapted = [json.loads(p.read_text())["average_mAP"] for p in
               sorted((tmp_path / "abl" / "points").glob("adapter.kernel_size_1-*/seed*/result.json"))]
    expected = paired_difference(adapted, [o["average_mAP"] for o in originals])
    assert first["columns"]["average_mAP"]["difference"] == pytest.approx(expected, nan_ok=True)
    assert "lbfgs_balanced_accuracy" in first["columns"]
    assert "lbfgs_balanced_accuracy" not in table["rows"][2]["columns"]  # unified: no probe of its own
    markdown = (tmp_path / "abl" / "ablate.md").read_text()
    assert "| adapter.kernel_size=3 |" in markdown and "| mode=unified |" in markdown and "[" in markdown
    assert [p.split("/")[-1] for p in table["plots"]] == ["ablate_adapter.kernel_size.png", "ablate_mode.png"]
    assert (tmp_path / "abl" / "ablate_adapter.kernel_size.png").read_bytes()[:4] == b"\x89PNG"

    import sola.tal.experiment

    monkeypatch.setattr(sola.tal.experiment, "run_experiment", lambda *a, **k: pytest.fail("retrained a finished cell"))
    again = ablate(store, annotations, tal, points, tmp_path / "abl", seeds=2,
                   sola_config=load_config(None, TINY_SOLA), log=lambda line: None)
    assert json.dumps(again["rows"], default=str) == json.dumps(table["rows"], default=str)


def test_ablate_command_refuses_bad_grids_in_one_line(synthetic_small, tmp_path, capsys):
    args = ["ablate", str(synthetic_small / "features"), "--annotations", str(synthetic_small / "annotations.json"),
            "--config", "tal_synthetic_cpu", "--out", str(tmp_path / "abl")]
    assert main([*args, "--grid", "kernel=1,3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "grid key 'kernel'" in err
    assert main([*args, "--grid", "adapter.kernel_size=1", "--preset", "unified"]) == 2
    assert "not both" in capsys.readouterr().err
    assert main([*args, "--grid", "adapter.kernel_size=4"]) == 2  # refused before any work
    assert "adapter.kernel_size" in capsys.readouterr().err and not (tmp_path / "abl").exists()
