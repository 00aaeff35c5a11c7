"""Checkpoint selection and the TSM picture command."""

from __future__ import annotations

import json

import pytest
import torch

from sola.adapter import SoLaAdapter, save_adapter
from sola.cli import main
from sola.errors import CheckpointError, ConfigError
from sola.select import list_checkpoints, select_checkpoint
from tests.test_probe import DIM, make_toy


def scrambler() -> SoLaAdapter:
    """An adapter whose large random residual drowns the features (gate tanh(3) ~ 1)."""
    torch.manual_seed(0)
    adapter = SoLaAdapter(DIM, 16)
    with torch.no_grad():
        adapter.alpha.fill_(3.0)
        adapter.out.weight.mul_(200.0)
        adapter.out.bias.normal_(0, 50.0)
    return adapter


def make_run(root, adapters):
    """A run directory with checkpoints/epoch_XXXX.safetensors for {epoch: adapter}."""
    run = root / "run"
    for epoch, adapter in adapters.items():
        save_adapter(adapter, run / "checkpoints" / f"epoch_{epoch:04d}.safetensors", {"epoch": epoch})
    return run


def test_select_keeps_the_best_checkpoint(tmp_path):
    store, annotations = make_toy(tmp_path, flip=0)
    run = make_run(tmp_path, {2: scrambler(), 4: SoLaAdapter(DIM, 16), 6: scrambler()})
    table = select_checkpoint(run, store, annotations, seed=0)
    assert set(table["rows"]) == {"baseline", "epoch_0002", "epoch_0004", "epoch_0006"}
    assert table["best_epoch"] == 4  # the identity keeps the separable features intact
    assert (run / "best.safetensors").read_bytes() == (run / "checkpoints" / "epoch_0004.safetensors").read_bytes()
    assert table["rows"]["epoch_0004"] == table["rows"]["baseline"]
    assert table["rows"]["epoch_0002"]["lbfgs_balanced_accuracy"] < table["best_value"]
    written = json.loads((run / "select.json").read_text())
    assert written["best_epoch"] == 4 and written["metric"] == "lbfgs_balanced_accuracy"


def test_ties_go_to_the_earliest_checkpoint(tmp_path):
    store, annotations = make_toy(tmp_path, flip=0)
    run = make_run(tmp_path, {10: SoLaAdapter(DIM, 16), 20: SoLaAdapter(DIM, 16)})
    table = select_checkpoint(run, store, annotations, metric="sgd_accuracy")
    assert table["best_epoch"] == 10


def test_bad_requests(tmp_path):
    store, annotations = make_toy(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoints"):
        list_checkpoints(tmp_path)
    run = make_run(tmp_path, {1: SoLaAdapter(DIM, 16)})
    with pytest.raises(ConfigError, match="lbfgs_accuracy"):
        select_checkpoint(run, store, annotations, metric="loss")
    wrong_dim = make_run(tmp_path / "other", {1: SoLaAdapter(DIM + 1, 16)})
    with pytest.raises(CheckpointError, match="dim"):
        select_checkpoint(wrong_dim, store, annotations)


def test_select_command(tmp_path, capsys):
    make_toy(tmp_path, flip=0)
    run = make_run(tmp_path, {1: scrambler(), 2: SoLaAdapter(DIM, 16)})
    args = ["select", str(run), "--features", str(tmp_path / "features"),
            "--annotations", str(tmp_path / "annotations.json"), "--quiet", "--device", "cpu"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "best by lbfgs_balanced_accuracy: epoch 2" in out and "epoch_0001" in out
    assert (run / "best.safetensors").is_file()
    assert main(["select", str(tmp_path / "nowhere"), *args[2:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_tsm_command_writes_pictures(tmp_path, capsys):
    make_toy(tmp_path)
    adapter_file = save_adapter(scrambler(), tmp_path / "adapter.safetensors")
    features, annotations = str(tmp_path / "features"), str(tmp_path / "annotations.json")
    plain, both = tmp_path / "plain.png", tmp_path / "both.png"
    assert main(["tsm", features, "--video", "validation_0", "--out", str(plain)]) == 0
    assert main(["tsm", features, "--video", "validation_0", "--adapter", str(adapter_file),
                 "--annotations", annotations, "--out", str(both)]) == 0
    for picture in (plain, both):
        assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and picture.stat().st_size > 5000
    assert both.stat().st_size > plain.stat().st_size  # two panels and ground truth
    capsys.readouterr()
    assert main(["tsm", features, "--video", "nope", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "no video 'nope'" in err and err.count("\n") == 1


def test_segments_in_snippets_follow_the_grid(tmp_path):
    from sola.tsm import segments_in_snippets

    _, annotations = make_toy(tmp_path, videos=(("training", 1),))
    # fps 1, stride 1: the segment [20, 40] s covers snippets 20..39, i.e. [20, 40) on the axis.
    assert segments_in_snippets(annotations["training_0"], 60) == [(20.0, 40.0)]


def test_tsm_on_real_i3d_features(tmp_path):
    from tests.conftest import shared_path

    folder = shared_path("features", "i3d_2048_two_stream")
    out = tmp_path / "highjump.png"
    assert main(["tsm", str(folder), "--video", "highjump", "--annotations", str(folder / "gt.json"),
                 "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG" and out.stat().st_size > 20000


def test_select_defaults_to_the_fitted_store(synthetic_small, tmp_path):
    """Without --features, `sola select` probes the store named in RUN_DIR/run.json."""
    from sola.cli import main
    from sola.config import load_config
    from sola.fit import fit_adapter
    from sola.stores import open_store

    config = load_config(None, {"adapter.hidden_dim": 8, "matching.projector_dim": 8, "fit.epochs": 2,
                                "fit.batch_size": 16, "fit.checkpoint_every": 1})
    run = tmp_path / "run"
    fit_adapter(open_store(synthetic_small / "features"), config, run, progress=False, log=lambda s: None)
    code = main(["select", str(run), "--annotations", str(synthetic_small / "annotations.json"), "--quiet"])
    assert code == 0 and (run / "best.safetensors").is_file()
    (run / "run.json").unlink()
    assert main(["select", str(run), "--annotations", str(synthetic_small / "annotations.json"), "--quiet"]) == 2
