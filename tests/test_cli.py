import json
import subprocess
import sys

import numpy as np
import pytest

from sola.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sola", *args], capture_output=True, text=True, timeout=300)


def test_synth_train_transform_end_to_end(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["synth", str(data), "--videos", "12", "--dim", "24", "--classes", "3", "--seed", "4"]) == 0
    annotations = json.loads((data / "annotations.json").read_text())["database"]
    assert len(annotations) == 12 and len(list((data / "features").glob("*.npy"))) == 12
    config = tmp_path / "small.yaml"
    config.write_text("adapter: {hidden_dim: 16}\nmatching: {projector_dim: 16}\nfit: {batch_size: 8, lr: 0.001}\n")
    run = tmp_path / "run"
    code = main(["train", str(data / "features"), "--out", str(run), "--config", str(config),
                 "--epochs", "2", "--seed", "1", "--windows-per-video", "2", "--quiet"])
    assert code == 0
    assert "trained 2 epochs" in capsys.readouterr().out
    assert (run / "adapter.safetensors").is_file()
    assert main(["train", str(data / "features"), "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    out = tmp_path / "sola"
    assert main(["transform", str(data / "features"), "--adapter", str(run / "adapter.safetensors"),
                 "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.npy")) == sorted(p.name for p in (data / "features").glob("*.npy"))
    first = sorted(out.glob("*.npy"))[0]
    assert np.load(first).dtype == np.float32
    assert "1 already done" not in capsys.readouterr().out
    assert main(["transform", str(data / "features"), "--adapter", str(run), "--out", str(out), "--quiet"]) == 0
    assert "12 already done" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "/nonexistent/features", "--out", "/tmp/x"], "does not exist"),
        (["transform", "/nonexistent/f", "--adapter", "/nonexistent/a.safetensors", "--out", "/tmp/y"], "does not exist"),
        (["train", ".", "--out", "/tmp/x", "--epochs", "0"], None),
    ],
)
def test_bad_input_is_one_line_without_traceback(args, message, tmp_path):
    result = run_cli(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    if message:
        assert message in lines[0]


def test_bad_feature_file_names_the_file(tmp_path):
    features = tmp_path / "f"
    features.mkdir()
    np.save(features / "good.npy", np.zeros((30, 4), dtype=np.float32))
    (features / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    result = run_cli("train", str(features), "--out", str(tmp_path / "run"), "--epochs", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "broken.npy" in result.stderr
    assert not (tmp_path / "run" / "adapter.safetensors").exists()
