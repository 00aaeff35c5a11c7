"""`ExtractConfig` and the config plumbing of `sola extract` / `sola classify` (no decoder, no weights)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sola.extract.extract as extract_module
from sola.cli import main
from sola.core.errors import ConfigError
from sola.extract.config import ExtractConfig
from sola.extract.extract import ExtractSummary, extract_videos


def test_defaults_are_the_commands_defaults(tmp_path):
    config = ExtractConfig()
    assert config.sections() == ["encoder", "extract", "classify"]
    assert (config.encoder.device, config.encoder.cache) == ("auto", None)
    x = config.extract
    assert (x.fps, x.window, x.stride, x.batch_size, x.workers, x.output) == (None, 16, 16, 8, None, "features")
    c = config.classify
    assert (c.fps, c.window, c.batch_size, c.topk, c.start, c.max_seconds) == (25.0, 64, 2, 5, 0.0, None)
    config.save(tmp_path / "extract.yaml")
    assert ExtractConfig.load(tmp_path / "extract.yaml") == config


def test_config_module_imports_neither_torch_nor_pyav():
    code = ("import sys, sola.extract, sola.extract.config; "
            "sys.exit(bool({'torch', 'av'} & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_library_refuses_a_bad_value_before_any_work(tmp_path):
    with pytest.raises(ConfigError, match="^extract.window must be a positive integer <= 1e[+]15, got 0"):
        extract_videos(tmp_path / "none.mp4", tmp_path / "out", ExtractConfig.from_dict({"extract": {"window": 0}}))
    with pytest.raises(ConfigError, match="^encoder.device must be auto, cpu, cuda or cuda:N"):
        extract_videos(tmp_path / "none.mp4", tmp_path / "out", ExtractConfig.from_dict({"encoder": {"device": "gpu"}}))
    assert not (tmp_path / "out").exists()


@pytest.fixture()
def captured(monkeypatch):
    """Replace the library calls of `sola extract`/`classify`: record the config they get."""
    calls = []

    def fake_extract(inputs, out_dir, config=None, encoder=None, progress=None):
        calls.append(config)
        return ExtractSummary(Path(out_dir), Path(out_dir) / "extract_metadata.json")

    def fake_classify(path, config=None, encoder=None):
        calls.append(config)
        return [("abseiling", 1.0)]

    monkeypatch.setattr(extract_module, "extract_videos", fake_extract)  # the command imports it when it runs
    monkeypatch.setattr(extract_module, "classify_video", fake_classify)
    return calls


def test_extract_command_reads_config_set_and_flags(tmp_path, captured, capsys):
    (tmp_path / "extract.yaml").write_text("extract:\n  stride: 8\n  fps: 5\n  window: 32\nencoder:\n  device: cpu\n")
    args = ["extract", str(tmp_path / "videos"), "--out", str(tmp_path / "out"),
            "--config", str(tmp_path / "extract.yaml")]
    assert main([*args, "--set", "extract.workers=3", "--window", "4", "--set", "extract.window=2"]) == 0
    (config,) = captured
    assert (config.extract.stride, config.extract.fps, config.extract.workers) == (8, 5.0, 3)
    assert config.extract.window == 4  # the named flag wins over --set and the file
    assert config.encoder.device == "cpu" and config.classify == ExtractConfig().classify
    assert main(["classify", "clip.mp4", "--topk", "3", "--set", "classify.batch_size=4", "--cache", "/weights"]) == 0
    assert (captured[1].classify.topk, captured[1].classify.batch_size, captured[1].encoder.cache) == (3, 4, "/weights")


@pytest.mark.parametrize("args, says", [
    (["--set", "extract.window=0"], "--set: extract.window must be a positive integer <= 1e+15, got 0"),
    (["--set", "extract.strides=8"], "unknown key extract.strides"),
    (["--set", "extract.output=pixels"], "extract.output must be one of features, logits"),
    (["--set", "encoder.device=gpu0"], "encoder.device must be auto, cpu, cuda or cuda:N"),
])
def test_extract_command_refuses_bad_values_naming_the_key(tmp_path, captured, capsys, args, says):
    assert main(["extract", str(tmp_path / "videos"), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    assert not captured and not (tmp_path / "out").exists()


def test_bad_config_file_and_classify_values_are_refused_before_the_video_is_read(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("extract:\n  strides: 8\n")
    assert main(["extract", str(tmp_path / "videos"), "--out", str(tmp_path / "out"),
                 "--config", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.yaml: unknown key extract.strides" in err
    # the video does not exist: the config error comes first
    assert main(["classify", str(tmp_path / "missing.mp4"), "--set", "classify.topk=0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "classify.topk must be a positive integer <= 400, got 0" in err
