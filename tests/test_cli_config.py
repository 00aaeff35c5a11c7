"""The one config pattern of the CLI: --config FILE, --set KEY=VALUE, named flags as shortcuts, --resume."""

import pytest
import yaml

from sola.adapt.adapter import SoLaAdapter, save_adapter
from sola.cli import main
from sola.core.errors import ConfigError

SMALL = ["--set", "adapter.hidden_dim=16", "--set", "matching.projector_dim=16", "--set", "fit.batch_size=8"]


def saved_config(run_dir):
    return yaml.safe_load((run_dir / "config.yaml").read_text())


def test_train_takes_set_and_named_flags_win(synthetic_small, tmp_path):
    run = tmp_path / "run"
    code = main(["train", str(synthetic_small / "features"), "--out", str(run), *SMALL, "--set", "fit.lr=0.002",
                 "--set", "fit.epochs=5", "--epochs", "1", "--quiet"])
    assert code == 0
    config = saved_config(run)
    assert config["fit"]["lr"] == 0.002 and config["fit"]["epochs"] == 1  # --epochs beats --set fit.epochs
    assert config["adapter"]["hidden_dim"] == 16
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_resume_is_the_same_flag_in_train_and_tal_train(synthetic_small, tmp_path, capsys):
    features = str(synthetic_small / "features")
    run = tmp_path / "run"
    assert main(["train", features, "--out", str(run), *SMALL, "--epochs", "1", "--quiet"]) == 0
    # --out RUN_DIR --resume and --resume RUN_DIR continue the same run
    assert main(["train", features, "--out", str(run), "--resume", "--epochs", "2", "--quiet"]) == 0
    assert main(["train", features, "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()
    assert main(["train", features, "--resume", str(run), "--set", "fit.lr=0.1", "--quiet"]) == 2
    assert "keeps its own config.yaml" in capsys.readouterr().err
    assert main(["train", features, "--out", str(tmp_path / "other"), "--resume", str(run), "--quiet"]) == 2
    assert "drop --out or give the same directory" in capsys.readouterr().err

    tal = tmp_path / "tal"
    common = ["tal", "train", features, "--annotations", str(synthetic_small / "annotations.json"),
              "--config", "tal_synthetic_cpu", "--set", "train.epochs=1", "--set", "train.warmup_epochs=0",
              "--set", "model.embd_dim=16", "--set", "model.head_dim=16", "--set", "model.n_head=2", "--seed", "3"]
    assert main([*common, "--out", str(tal), "--quiet"]) == 0
    assert saved_config(tal)["train"]["seed"] == 3  # a named flag lands in the run's config
    capsys.readouterr()
    assert main([*common, "--resume", str(tal), "--quiet"]) == 0
    assert "already trained" in capsys.readouterr().out


def test_transform_reads_its_section_from_config_and_set(synthetic_small, tmp_path, capsys):
    features = synthetic_small / "features"
    adapter = SoLaAdapter(32, 8)
    adapter.alpha.data.fill_(0.5)
    save_adapter(adapter, tmp_path / "adapter.safetensors")
    config = tmp_path / "transform.yaml"
    config.write_text("transform: {chunk_size: 7, nan_policy: zero}\n")
    out = tmp_path / "out"
    assert main(["transform", str(features), "--adapter", str(tmp_path / "adapter.safetensors"), "--out", str(out),
                 "--config", str(config), "--quiet"]) == 0
    assert len(list(out.glob("*.npy"))) == 24
    capsys.readouterr()
    code = main(["transform", str(features), "--adapter", str(tmp_path / "adapter.safetensors"),
                 "--out", str(tmp_path / "out2"), "--set", "transform.chunk_size=0", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "transform.chunk_size" in err
    code = main(["transform", str(features), "--adapter", str(tmp_path / "adapter.safetensors"),
                 "--out", str(tmp_path / "out3"), "--set", "transform.chunks=3", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "unknown key transform.chunks" in err


def test_compare_routes_set_keys_to_the_config_that_has_the_section(synthetic_small, tmp_path, monkeypatch):
    import sola.experiments.compare as compare_module

    seen = {}

    def fake_compare(store, annotations, tal_config, out_dir, **kwargs):
        seen["tal"], seen["sola"] = tal_config, kwargs["sola_config"]
        return {"rows": {"baseline": {"mAP_mean": {"0.50": 0.5}, "mAP_std": {"0.50": 0.0}, "average_mAP_mean": 0.5,
                                      "average_mAP_std": 0.0, "probe_accuracy": None,
                                      "probe_balanced_accuracy": None, "seconds_per_epoch": 0.1, "seeds": [0],
                                      "scoring": "x"}}, "train_subset": "training", "test_subset": "validation"}

    monkeypatch.setattr(compare_module, "compare", fake_compare)  # `sola compare` imports it when it runs
    code = main(["compare", str(synthetic_small / "features"), "--annotations", str(synthetic_small / "annotations.json"),
                 "--config", "tal_synthetic_cpu", "--set", "train.epochs=2", "--set", "fit.lr=0.003",
                 "--out", str(tmp_path / "cmp"), "--quiet"])
    assert code == 0
    assert seen["tal"].train.epochs == 2 and seen["sola"].fit.lr == 0.003


def test_demo_schedule_then_file_then_set(tmp_path):
    from sola.data.stores import open_store
    from sola.experiments.demo import _fit_config
    from tests.conftest import write_npy_store

    store = open_store(write_npy_store(tmp_path / "f", [40] * 4))
    assert _fit_config(store, None, {}).fit.steps == 100  # the demo's budget
    config = tmp_path / "demo.yaml"
    config.write_text("fit: {steps: 60, lr: 0.0002}\n")
    from_file = _fit_config(store, config, {"fit.lr": 0.0003})
    assert (from_file.fit.steps, from_file.fit.lr) == (60, 0.0003)
    epochs = _fit_config(store, None, {"fit.epochs": 2})
    assert (epochs.fit.steps, epochs.fit.epochs) == (0, 2)
    with pytest.raises(ConfigError, match="fit.steps"):
        _fit_config(store, None, {"fit.steps": -1})


def test_set_needs_section_dot_key(synthetic_small, tmp_path, capsys):
    code = main(["train", str(synthetic_small / "features"), "--out", str(tmp_path / "r"), "--set", "lr=1"])
    assert code == 2 and "SECTION.KEY=VALUE" in capsys.readouterr().err


def test_synth_and_splice_take_config_set_and_shortcuts(tmp_path, capsys):
    import json

    from tests.conftest import SHARED

    (tmp_path / "synth.yaml").write_text("synth:\n  videos: 3\n  min_length: 50\n  max_length: 60\n")
    assert main(["synth", str(tmp_path / "syn"), "--config", str(tmp_path / "synth.yaml"), "--set", "synth.dim=12",
                 "--videos", "4"]) == 0  # the named flag beats the file
    database = json.loads((tmp_path / "syn" / "annotations.json").read_text())["database"]
    assert len(database) == 4 and all(50 <= v["duration"] * 30 / 16 <= 61 for v in database.values())
    clips = SHARED / "features" / "gym_clips"
    if not clips.is_dir():
        pytest.skip(f"{clips} is not here")
    assert main(["splice", str(clips), str(tmp_path / "spl"), "--videos", "12", "--clips-per-video", "3:4",
                 "--set", "splice.fps=25", "--quiet"]) == 0
    spliced = json.loads((tmp_path / "spl" / "annotations.json").read_text())["database"]
    assert len(spliced) == 12 and {v["fps"] for v in spliced.values()} == {25.0}
    assert all(3 <= len(v["clips"]) <= 4 for v in spliced.values())
    capsys.readouterr()
    assert main(["splice", str(clips), str(tmp_path / "bad"), "--set", "splice.colour=red"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "colour" in err
