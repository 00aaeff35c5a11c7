"""Resumable TAL training: an interrupted run continued from its state equals an uninterrupted one.

On the CPU the training loop is deterministic, and the state restores everything it reads
(model, EMA, AdamW moments, loss normaliser, step, NumPy/torch/Python RNG streams), so the
resumed weights are compared bitwise (`torch.equal`), dropout and drop-path included.
"""


import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file  # noqa: E402

import sola.tal.train as train_module  # noqa: E402
from sola.cli import main  # noqa: E402
from sola.core.config import SoLaConfig  # noqa: E402
from sola.core.errors import CheckpointError  # noqa: E402
from sola.core.runs import STATE  # noqa: E402
from sola.data.synthetic import SyntheticConfig, write_synthetic  # noqa: E402
from sola.tal.config import load_tal_config  # noqa: E402
from sola.tal.data import make_item  # noqa: E402
from sola.tal.train import train_head  # noqa: E402
from sola.tal.unified import unified_parts  # noqa: E402

# 2 warm-up + 2 epochs of 2 steps; dropout and drop-path on, so the torch RNG stream matters too
TINY = {"model.embd_dim": 16, "model.head_dim": 16, "model.n_head": 2, "model.window_size": 5,
        "model.dropout": 0.1, "model.drop_path": 0.1, "data.max_seq_len": 64, "train.epochs": 2,
        "train.warmup_epochs": 2, "train.batch_size": 2, "train.lr": 1e-2, "train.ema_decay": 0.5}


class Killed(Exception):
    """Stands in for a job killed right after an epoch's state was written."""


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def config(**overrides):
    return load_tal_config(None, {**TINY, "data.input_dim": 8, "data.num_classes": 2, **overrides})


def items(n=4):
    rng = np.random.default_rng(0)
    return [make_item(f"v{i}", rng.normal(size=(50 + 10 * i, 8)), [[10, 30]], [i % 2], fps=1.0, feat_stride=1.0,
                      num_frames=0.0) for i in range(n)]


def parts(mode):
    torch.manual_seed(0)
    if mode == "baseline":
        return {}
    sola = SoLaConfig()
    sola.adapter.hidden_dim = sola.matching.projector_dim = 16
    adapter, auxiliary = unified_parts(mode, 8, sola)
    return {"adapter": adapter, "auxiliary": auxiliary}


def kill_after(epochs):
    def on_epoch(epoch, record):
        if epoch == epochs:
            raise Killed
    return on_epoch


def assert_same_weights(a, b):
    a, b = a.state_dict(), b.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("mode", ["baseline", "unified+sm"])
def test_resumed_run_equals_uninterrupted_run(mode, tmp_path):
    full = train_head(items(), config(), seed=3, progress=False, **parts(mode))
    with pytest.raises(Killed):
        train_head(items(), config(), seed=3, progress=False, state_dir=tmp_path, on_epoch=kill_after(2), **parts(mode))
    assert (tmp_path / STATE).is_file()
    resumed = train_head(items(), config(), seed=3, progress=False, state_dir=tmp_path, resume=True, **parts(mode))
    assert resumed.resumed_epochs == 2 and len(resumed.history) == 4
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    assert_same_weights(resumed.model, full.model)


def test_finished_run_is_not_retrained(tmp_path):
    first = train_head(items(), config(), seed=0, progress=False, state_dir=tmp_path)
    saved = (tmp_path / STATE).read_bytes()
    epochs = []
    again = train_head(items(), config(), seed=0, progress=False, state_dir=tmp_path, resume=True,
                       on_epoch=lambda epoch, record: epochs.append(epoch))
    assert epochs == [] and again.resumed_epochs == 4 and again.history == first.history
    assert (tmp_path / STATE).read_bytes() == saved
    assert_same_weights(again.model, first.model)


def test_state_is_protected_and_checked(tmp_path):
    with pytest.raises(Killed):
        train_head(items(), config(), seed=0, progress=False, state_dir=tmp_path, on_epoch=kill_after(1))
    with pytest.raises(CheckpointError, match="resume=True"):
        train_head(items(), config(), seed=0, progress=False, state_dir=tmp_path)
    with pytest.raises(CheckpointError, match="differs in config"):
        train_head(items(), config(**{"train.lr": 1e-3}), seed=0, progress=False, state_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="differs in seed"):
        train_head(items(), config(), seed=1, progress=False, state_dir=tmp_path, resume=True)
    with pytest.raises(CheckpointError, match="differs in videos"):
        train_head(items(3), config(), seed=0, progress=False, state_dir=tmp_path, resume=True)
    (tmp_path / STATE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="unreadable training state"):
        train_head(items(), config(), seed=0, progress=False, state_dir=tmp_path, resume=True)


def test_cli_resumes_and_does_not_retrain(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    write_synthetic(data, SyntheticConfig(videos=10, dim=8, classes=2, min_length=40, max_length=64, max_action=16,
                                          max_gap=12, seed=0), progress=False)
    sets = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]

    def train(out, *extra):
        return main(["tal", "train", str(data / "features"), "--annotations", str(data / "annotations.json"),
                     "--out", str(out), "--seed", "0", *sets, *extra])

    assert train(tmp_path / "full") == 0
    names = {p.name for p in (tmp_path / "full").iterdir()}
    assert names == {"weights.safetensors", "config.yaml", "classes.json", "metrics.jsonl", "features.json", STATE}

    # killed after epoch 1, then resumed with the same command plus --resume
    plain = train_module.train_head
    monkeypatch.setattr(train_module, "train_head", lambda *a, **k: plain(*a, on_epoch=kill_after(1), **k))
    with pytest.raises(Killed):
        train(tmp_path / "cut")
    monkeypatch.setattr(train_module, "train_head", plain)
    capsys.readouterr()
    assert train(tmp_path / "cut") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err
    assert train(tmp_path / "cut", "--resume") == 0
    assert "resumed after epoch 1" in capsys.readouterr().out
    full, cut = load_file(str(tmp_path / "full" / "weights.safetensors")), load_file(str(tmp_path / "cut" / "weights.safetensors"))
    assert full.keys() == cut.keys() and all(torch.equal(full[k], cut[k]) for k in full)
    assert len((tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()) == 4

    # a finished run: rerunning with --resume trains nothing and rewrites the same weights
    before = (tmp_path / "full" / "weights.safetensors").read_bytes()
    assert train(tmp_path / "full", "--resume") == 0
    assert "not retrained" in capsys.readouterr().out
    assert (tmp_path / "full" / "weights.safetensors").read_bytes() == before
