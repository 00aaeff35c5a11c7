"""Checkpoint selection by a proxy of the head (`sola.evaluate.select_head`) and its use in `sola select`/`compare`."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import sola.tal.experiment
from sola.cli import main
from sola.core.errors import ConfigError
from sola.core.stats import paired_difference
from sola.evaluate.probe import ProbeConfig
from sola.evaluate.select import select_checkpoint
from sola.evaluate.select_head import (IDENTITY, SELECT_HELDOUT, SELECT_TRAIN, decide, head_select_checkpoint,
                                       proxy_config, selection_split)
from sola.tal.config import load_tal_config
from tests.test_probe import make_toy
from tests.test_select import add_noise, make_run, scrambler, smoother

TINY_TAL = {"train.epochs": 2, "train.warmup_epochs": 1, "model.embd_dim": 16, "model.head_dim": 16}


def head_rule(**select) -> ProbeConfig:
    return ProbeConfig.from_dict({"select": {"criterion": "head", **select}})


def sharpness_head(calls: list):
    """A stand-in head whose held-out avg mAP rises with the features' temporal sharpness (mean |x[t+1] - x[t]|)
    and shifts with the seed: a head that needs sharp boundaries, which a smoother takes away."""

    def run(store, annotations, config, seed=0, **kwargs):
        held = sorted(annotations.subset(config.data.test_subset))
        calls.append((store.path, config.data.train_subset, config.data.test_subset, held, seed))
        sharp = np.mean([np.abs(np.diff(store.read(video), axis=0)).mean() for video in held])
        value = 0.2 + 0.1 * min(float(sharp), 3.0) + 0.01 * seed + 0.001 * (seed * seed % 3)
        return {"average_mAP": value, "mAP": {"0.50": value}}

    return run


def noisy_toy(tmp_path):
    store, annotations = make_toy(tmp_path, videos=(("training", 8), ("validation", 2)), flip=0)
    add_noise(tmp_path)  # the smoother removes the noise: the probe gains, the sharpness head loses
    return store, annotations


def test_head_criterion_rejects_a_checkpoint_that_helps_the_probe_but_hurts_the_head(tmp_path, monkeypatch):
    store, annotations = noisy_toy(tmp_path)
    run = make_run(tmp_path, {10: smoother()})
    by_probe = select_checkpoint(run, store, annotations)
    assert by_probe["best"] == "epoch_0010"  # the probe criterion takes it

    calls = []
    monkeypatch.setattr(sola.tal.experiment, "run_experiment", sharpness_head(calls))
    table = head_select_checkpoint(run, store, annotations, load_tal_config("tal_synthetic_cpu"), head_rule())
    assert table["criterion"] == "head" and table["best"] == "identity" and table["identity_wins"]
    row = table["rows"]["epoch_0010"]
    assert len(row["average_mAP"]) == 3 and row["gain"]["n"] == 3
    assert row["gain"]["high"] < 0 and not row["passes"]  # it hurts the head on every seed
    assert np.allclose(row["gain"]["mean"], np.mean(row["average_mAP"]) - np.mean(table["rows"]["identity"]["average_mAP"]))
    assert "no checkpoint showed a gain whose 95% interval lies above +0.0" in table["reason"]
    assert table["message"].startswith("identity wins:") and "best.safetensors is the identity" in table["message"]
    saved = json.loads((run / "select.json").read_text())
    assert saved["rows"]["epoch_0010"]["average_mAP"] == row["average_mAP"] and saved["reason"] == table["reason"]
    assert saved["head_epochs"] == 6 and saved["seeds"] == 3
    from sola.adapt.adapter import load_adapter

    assert load_adapter(run / "best.safetensors").gate == 0.0
    # Proxies train on the training part and are measured on held-out training videos only.
    held = set(saved["heldout_videos"])
    assert held and all(annotations[v].subset == "training" for v in held)
    assert all(train == SELECT_TRAIN and test == SELECT_HELDOUT and set(ids) == held for _, train, test, ids, _ in calls)
    assert sorted(seed for *_, seed in calls) == [0, 0, 1, 1, 2, 2]


def test_a_checkpoint_whose_head_gain_clears_the_interval_wins_and_ties_go_earlier(tmp_path, monkeypatch):
    store, annotations = noisy_toy(tmp_path)
    run = make_run(tmp_path, {4: smoother(), 8: scrambler(), 12: scrambler()})
    monkeypatch.setattr(sola.tal.experiment, "run_experiment", sharpness_head([]))
    table = head_select_checkpoint(run, store, annotations, load_tal_config("tal_synthetic_cpu"), head_rule())
    assert table["best"] == "epoch_0008" and not table["identity_wins"] and table["best_epoch"] == 8
    assert table["rows"]["epoch_0008"]["gain"]["low"] > 0 and table["rows"]["epoch_0008"]["passes"]
    assert table["rows"]["epoch_0012"]["average_mAP"] == table["rows"]["epoch_0008"]["average_mAP"]
    assert (run / "best.safetensors").read_bytes() == (run / "checkpoints" / "epoch_0008.safetensors").read_bytes()
    assert table["message"].startswith("epoch_0008 wins: epoch_0008 showed a gain whose 95% interval")
    # A margin above the gain keeps the identity.
    gain = table["rows"]["epoch_0008"]["gain"]["low"]
    kept = head_select_checkpoint(run, store, annotations, load_tal_config("tal_synthetic_cpu"),
                                  head_rule(head_margin=gain + 0.01))
    assert kept["best"] == "identity" and f"above {100 * (gain + 0.01):+.1f}" in kept["reason"]


def test_a_positive_mean_gain_is_not_enough():
    identity = [0.40, 0.50, 0.45]
    rows = {IDENTITY: {"average_mAP": identity}}
    for name, values in {"epoch_0002": [0.50, 0.46, 0.50], "epoch_0004": [0.41, 0.51, 0.46]}.items():
        rows[name] = {"average_mAP": values, "gain": paired_difference(values, identity)}
    assert rows["epoch_0002"]["gain"]["mean"] > 0 and rows["epoch_0002"]["gain"]["low"] < 0  # seeds disagree
    assert decide(rows, 0.0) == "epoch_0004"  # a small gain on every seed clears the interval
    assert decide(rows, 0.02) == IDENTITY
    rows["epoch_0004"]["gain"] = paired_difference([0.41], [0.40])  # one pair: no interval, never wins
    assert decide(rows, 0.0) == IDENTITY
    nan = {"mean": math.nan, "std": math.nan, "n": 3, "low": math.nan, "high": math.nan}
    assert decide({IDENTITY: {}, "epoch_0001": {"gain": nan}}, 0.0) == IDENTITY


def test_proxy_schedule_and_split(tmp_path):
    tal = load_tal_config("tal_splice_cpu")  # 5 warm-up + 30 cosine epochs
    proxy = proxy_config(tal, 6)
    assert (proxy.train.warmup_epochs, proxy.train.epochs) == (1, 5)
    assert (proxy.data.train_subset, proxy.data.test_subset) == (SELECT_TRAIN, SELECT_HELDOUT)
    assert proxy.model == tal.model and proxy.train.lr == tal.train.lr
    full = proxy_config(tal, 0)
    assert (full.train.warmup_epochs, full.train.epochs) == (5, 30)
    store, annotations = make_toy(tmp_path, videos=(("training", 8), ("holdout", 3), ("validation", 2)))
    relabelled, train, held, name, held_name = selection_split(store, annotations, None, "holdout", head_rule(),
                                                               "validation")
    assert (name, held_name) == ("training", "holdout") and len(train) == 8 and len(held) == 3
    assert set(relabelled.subsets()) == {SELECT_TRAIN, SELECT_HELDOUT}
    assert not any(v.startswith("validation") for v in relabelled)
    with pytest.raises(ConfigError, match="evaluation subset"):
        selection_split(store, annotations, None, "validation", head_rule(), "validation")
    with pytest.raises(ConfigError, match="select.seeds must be an integer between 2 and 1000"):
        head_rule(seeds=1).validate()
    with pytest.raises(ConfigError, match="select.criterion"):
        head_rule(criterion="mAP").validate()


def test_real_proxy_heads_resume_and_never_read_the_evaluation_subset(tmp_path, monkeypatch):
    store, annotations = make_toy(tmp_path, videos=(("training", 6), ("validation", 2)), flip=0)
    for path in (tmp_path / "features").glob("validation_*.npy"):
        path.write_bytes(b"not an array")  # reading the evaluation subset would fail
    run = make_run(tmp_path, {3: scrambler()})
    tal = load_tal_config("tal_synthetic_cpu", TINY_TAL)
    table = head_select_checkpoint(run, store, annotations, tal, head_rule(head_epochs=2, seeds=2))
    assert set(table["rows"]) == {"identity", "epoch_0003"}
    assert all(0.0 <= v <= 1.0 for row in table["rows"].values() for v in row["average_mAP"])
    assert table["seconds_per_seed"] > 0 and table["head_epochs"] == 2
    assert not list((run / "select_head").glob(".features_*"))  # scratch features removed
    # A rerun reuses every saved proxy score; another proxy setting does not.
    monkeypatch.setattr(sola.tal.experiment, "run_experiment", lambda *a, **k: pytest.fail("trained again"))
    again = head_select_checkpoint(run, store, annotations, tal, head_rule(head_epochs=2, seeds=2))
    assert again["rows"]["epoch_0003"]["average_mAP"] == table["rows"]["epoch_0003"]["average_mAP"]
    with pytest.raises(pytest.fail.Exception, match="trained again"):
        head_select_checkpoint(run, store, annotations, tal, head_rule(head_epochs=3, seeds=2))


def test_select_command_with_the_head_criterion(tmp_path, monkeypatch, capsys):
    noisy_toy(tmp_path)
    run = make_run(tmp_path, {10: smoother()})
    monkeypatch.setattr(sola.tal.experiment, "run_experiment", sharpness_head([]))
    code = main(["select", str(run), "--features", str(tmp_path / "features"), "--annotations",
                 str(tmp_path / "annotations.json"), "--criterion", "head", "--head-config", "tal_synthetic_cpu",
                 "--seeds", "4", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "| identity (best) |" in out and "| epoch_0010 |" in out and "seed 3" in out
    assert "identity wins: no checkpoint showed" in out
    assert json.loads((run / "select.json").read_text())["seeds"] == 4
    assert main(["select", str(run), "--features", str(tmp_path / "features"), "--annotations",
                 str(tmp_path / "annotations.json"), "--criterion", "head", "--set", "select.seeds=1"]) == 2
    assert "select.seeds must be an integer between 2 and 1000" in capsys.readouterr().err
