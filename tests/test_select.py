"""Checkpoint selection and the TSM picture command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sola.adapt.adapter import SoLaAdapter, load_adapter, save_adapter
from sola.adapt.transform import apply_adapter
from sola.cli import main
from sola.core.errors import AnnotationError, CheckpointError, ConfigError
from sola.core.runs import list_checkpoints
from sola.evaluate.probe import ProbeConfig, collect_heldout_snippets, split_videos
from sola.evaluate.select import select_checkpoint
from tests.test_probe import DIM, LENGTH, make_toy


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


def smoother(width: int = 9) -> SoLaAdapter:
    """An adapter whose output is the mean of the `width` snippets around each one: less snippet noise.

    g(f) = mean_window(f) - f, written as ReLU(+x) - ReLU(-x) through the hidden layer, gate 1.
    """
    adapter = SoLaAdapter(DIM, 2 * DIM, kernel_size=width)
    taps = torch.full((width,), 1.0 / width)
    taps[width // 2] -= 1.0  # the window mean minus the centre snippet
    with torch.no_grad():
        for module in (adapter.temporal, adapter.mix, adapter.out):
            module.weight.zero_()
            module.bias.zero_()
        for c in range(DIM):
            adapter.temporal.weight[c, c] = taps
            adapter.temporal.weight[DIM + c, c] = -taps
        adapter.mix.weight[:, :, 0] = torch.eye(2 * DIM)
        adapter.alpha.fill_(1.0)
        gate = float(torch.tanh(adapter.alpha))
        for c in range(DIM):
            adapter.out.weight[c, c, 0] = 1.0 / gate
            adapter.out.weight[c, DIM + c, 0] = -1.0 / gate
    return adapter


def add_noise(root, sd=1.0, seed=1):
    """Snippet noise on every feature of the toy store (the smoother removes most of it)."""
    rng = np.random.default_rng(seed)
    for path in sorted((root / "features").glob("*.npy")):
        x = np.load(path)
        np.save(path, x + rng.normal(0, sd, x.shape))


def test_identity_wins_when_every_checkpoint_is_worse(tmp_path):
    store, annotations = make_toy(tmp_path, flip=0)
    run = make_run(tmp_path, {2: scrambler(), 4: scrambler(), 6: scrambler()})
    table = select_checkpoint(run, store, annotations, seed=0)
    assert set(table["rows"]) == {"identity", "epoch_0002", "epoch_0004", "epoch_0006"}
    assert table["best"] == "identity" and table["identity_wins"] and table["best_epoch"] == 0
    assert table["best_value"] == table["identity_value"] and table["gain"] == 0
    for name in ("epoch_0002", "epoch_0004", "epoch_0006"):
        assert table["rows"][name]["lbfgs_balanced_accuracy"] < table["identity_value"]
    assert table["message"].startswith("identity wins: no checkpoint beats the original features on "
                                       "lbfgs_balanced_accuracy")
    assert "best.safetensors is the identity" in table["message"]
    # best.safetensors: a gate-0 adapter of the checkpoints' architecture, so its output is its input
    best = load_adapter(run / "best.safetensors")
    assert best.gate == 0.0 and (best.dim, best.hidden_dim) == (DIM, 16)
    x = np.random.default_rng(0).normal(size=(30, DIM)).astype(np.float32)
    assert np.array_equal(apply_adapter(best, x), x)
    assert (run / "best.safetensors").read_bytes() != (run / "checkpoints" / "epoch_0002.safetensors").read_bytes()
    written = json.loads((run / "select.json").read_text())
    assert written["best"] == "identity" and written["metric"] == "lbfgs_balanced_accuracy"
    assert written["best_checkpoint"] is None and written["identity_checkpoint"] is None
    assert written["checkpoints"] == ["epoch_0002", "epoch_0004", "epoch_0006"]


def test_epoch_0_is_the_identity_when_the_run_saved_it(tmp_path):
    store, annotations = make_toy(tmp_path, flip=0)
    run = make_run(tmp_path, {0: SoLaAdapter(DIM, 16), 10: scrambler()})
    table = select_checkpoint(run, store, annotations)
    assert set(table["rows"]) == {"identity", "epoch_0010"}  # epoch 0 is probed once, as the identity
    assert table["best"] == "identity" and table["identity_checkpoint"].endswith("epoch_0000.safetensors")
    assert (run / "best.safetensors").read_bytes() == (run / "checkpoints" / "epoch_0000.safetensors").read_bytes()


def test_a_clearly_better_checkpoint_wins(tmp_path):
    store, annotations = make_toy(tmp_path, videos=(("training", 8), ("validation", 2)), flip=0)
    add_noise(tmp_path)
    run = make_run(tmp_path, {5: scrambler(), 10: smoother(), 15: SoLaAdapter(DIM, 16), 20: smoother()})
    table = select_checkpoint(run, store, annotations)
    assert table["best"] == "epoch_0010" and table["best_epoch"] == 10 and not table["identity_wins"]
    assert table["best_value"] > table["identity_value"] + 0.05
    assert table["rows"]["epoch_0020"] == table["rows"]["epoch_0010"]  # a tie: the earlier epoch wins
    assert table["rows"]["epoch_0015"] == table["rows"]["identity"]  # a gate-0 checkpoint ties: not chosen
    assert (run / "best.safetensors").read_bytes() == (run / "checkpoints" / "epoch_0010.safetensors").read_bytes()
    assert table["message"].startswith(f"epoch_0010 wins: lbfgs_balanced_accuracy {table['best_value']:.3f} "
                                       f"vs identity {table['identity_value']:.3f}")
    # A margin the gain does not clear keeps the identity.
    kept = select_checkpoint(run, store, annotations, settings(select={"min_gain": 0.9}))
    assert kept["best"] == "identity" and "by more than 0.9" in kept["message"]
    assert load_adapter(run / "best.safetensors").gate == 0.0


def test_ties_go_to_the_identity(tmp_path):
    store, annotations = make_toy(tmp_path, flip=0)
    run = make_run(tmp_path, {10: SoLaAdapter(DIM, 16), 20: SoLaAdapter(DIM, 16)})
    table = select_checkpoint(run, store, annotations, settings(select={"metric": "sgd_accuracy"}))
    assert table["best"] == "identity" and table["rows"]["epoch_0010"] == table["rows"]["identity"]


def test_selection_never_reads_the_evaluation_subset(tmp_path):
    store, annotations = make_toy(tmp_path, videos=(("training", 8), ("validation", 4)), flip=0)
    for path in (tmp_path / "features").glob("validation_*.npy"):  # the evaluation subset is unusable
        np.save(path, np.full((LENGTH, DIM), np.nan))
    read = []
    original_read = store.read
    store.read = lambda video_id: read.append(video_id) or original_read(video_id)
    run = make_run(tmp_path, {1: scrambler()})
    table = select_checkpoint(run, store, annotations, settings(data={"holdout": 0.25}), seed=3)
    assert read and all(v.startswith("training_") for v in read)
    assert table["subset"] == "training" and table["val_videos"] == 2 and table["train_videos"] == 6
    assert all(v.startswith("training_") for v in table["heldout_videos"])
    assert table["identity_value"] == 1.0 and table["best"] == "identity"
    # THUMOS14-style annotations (validation/test only): the default subset is validation, never test.
    _, thumos = make_toy(tmp_path / "thumos", videos=(("validation", 4), ("test", 3)), flip=0)
    data = collect_heldout_snippets(store_of(tmp_path / "thumos"), thumos)
    assert data.train_subset == data.val_subset == "validation"
    assert all(v.startswith("validation_") for v in data.train.video_ids + data.val.video_ids)


def settings(**sections) -> ProbeConfig:
    """The default probe config with these sections' keys replaced."""
    return ProbeConfig.from_dict(sections)


def store_of(root):
    from sola.data.stores import open_store

    return open_store(root / "features")


def test_heldout_split_is_deterministic_and_disjoint(tmp_path):
    ids = [f"video_{n}" for n in range(20)]
    train, held = split_videos(ids, 0.25, seed=0)
    assert len(held) == 5 and len(train) == 15 and not set(train) & set(held) and set(train) | set(held) == set(ids)
    assert split_videos(list(reversed(ids)), 0.25, seed=0) == (train, held)  # input order does not matter
    assert split_videos(ids, 0.25, seed=1) != (train, held)
    assert sorted(map(len, split_videos(["a", "b"], 0.01))) == [1, 1]
    assert len(split_videos(ids, 0.99)[0]) == 1  # at least one video on each side
    with pytest.raises(AnnotationError, match="at least 2"):
        split_videos(["only"])
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ConfigError, match="between 0 and 1"):
            split_videos(ids, bad)
    # Through the store: the same split twice, and a subset with one video is refused plainly.
    store, annotations = make_toy(tmp_path, videos=(("training", 7), ("validation", 1)))
    first = collect_heldout_snippets(store, annotations, seed=5)
    second = collect_heldout_snippets(store, annotations, seed=5)
    assert first.val.video_ids == second.val.video_ids and first.train.video_ids == second.train.video_ids
    assert len(first.val.video_ids) == 2 and not set(first.val.video_ids) & set(first.train.video_ids)
    with pytest.raises(AnnotationError, match="'validation' has 1 video"):
        collect_heldout_snippets(store, annotations, subset="val")


def test_bad_requests(tmp_path):
    store, annotations = make_toy(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoints"):
        list_checkpoints(tmp_path, required=True)
    run = make_run(tmp_path, {1: SoLaAdapter(DIM, 16)})
    with pytest.raises(ConfigError, match="select.metric: unknown probe metric 'loss'.*lbfgs_accuracy"):
        select_checkpoint(run, store, annotations, settings(select={"metric": "loss"}))
    with pytest.raises(ConfigError, match="select.min_gain"):
        select_checkpoint(run, store, annotations, settings(select={"min_gain": -0.1}))
    with pytest.raises(AnnotationError, match="'test' has 0 video"):
        select_checkpoint(run, store, annotations, subset="test")
    wrong_dim = make_run(tmp_path / "other", {1: SoLaAdapter(DIM + 1, 16)})
    with pytest.raises(CheckpointError, match="dim"):
        select_checkpoint(wrong_dim, store, annotations)


def select_command_case(tmp_path):
    """A noisy toy store and a run whose epoch 2 (a smoother) beats epoch 1 (a scrambler); `sola select` args."""
    make_toy(tmp_path, videos=(("training", 8), ("validation", 2)), flip=0)
    add_noise(tmp_path)
    run = make_run(tmp_path, {1: scrambler(), 2: smoother()})
    return run, ["select", str(run), "--features", str(tmp_path / "features"),
                 "--annotations", str(tmp_path / "annotations.json"), "--quiet", "--device", "cpu"]


def test_select_command(tmp_path, capsys):
    run, args = select_command_case(tmp_path)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "epoch_0002 wins: lbfgs_balanced_accuracy" in out and "epoch_0001" in out and "identity" in out
    assert "measure on the other 2 (held out: 0.25, seed 0)" in out
    assert (run / "best.safetensors").is_file()
    assert main([*args, "--min-gain", "0.9", "--holdout", "0.5", "--subset", "training"]) == 0
    out = capsys.readouterr().out
    assert "identity wins: no checkpoint beats the original features" in out and "held-out 4 videos" in out
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
    from sola.evaluate.tsm import segments_in_snippets

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
    from sola.adapt.fit import fit_adapter
    from sola.cli import main
    from sola.core.config import load_config
    from sola.data.stores import open_store

    config = load_config(None, {"adapter.hidden_dim": 8, "matching.projector_dim": 8, "fit.epochs": 2,
                                "fit.batch_size": 16, "fit.checkpoint_every": 1})
    run = tmp_path / "run"
    fit_adapter(open_store(synthetic_small / "features"), config, run, progress=False, log=lambda s: None)
    code = main(["select", str(run), "--annotations", str(synthetic_small / "annotations.json"), "--quiet"])
    assert code == 0 and (run / "best.safetensors").is_file()
    (run / "run.json").unlink()
    assert main(["select", str(run), "--annotations", str(synthetic_small / "annotations.json"), "--quiet"]) == 2


def test_select_command_config_and_set_reach_the_selection(tmp_path, capsys):
    run, args = select_command_case(tmp_path)
    (tmp_path / "select.yaml").write_text("select:\n  min_gain: 0.9\n  metric: sgd_accuracy\n")
    assert main([*args, "--config", str(tmp_path / "select.yaml"), "--set", "data.holdout=0.5"]) == 0
    table = json.loads((run / "select.json").read_text())
    assert (table["metric"], table["min_gain"], table["holdout"]) == ("sgd_accuracy", 0.9, 0.5)
    assert table["best"] == "identity" and table["val_videos"] == 4
    # a named flag wins over the file
    assert main([*args, "--config", str(tmp_path / "select.yaml"), "--min-gain", "0"]) == 0
    assert json.loads((run / "select.json").read_text())["min_gain"] == 0
    capsys.readouterr()
    assert main([*args, "--set", "select.metrics=sgd_accuracy"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown key select.metrics" in err
    assert main([*args, "--metric", "loss"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "select.metric: unknown probe metric 'loss'" in err
