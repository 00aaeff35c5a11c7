"""The fit's guardrails: figures by hand, a collapsing schedule stopped, the reference schedule left alone."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from sola.adapt.fit import fit_adapter
from sola.adapt.health import FitDiverged, FitGuard, constant_map_loss, spread_figures
from sola.adapt.matching import target_map
from sola.adapt.schedule import lr_factor, steps_per_epoch, total_epochs
from sola.cli import main
from sola.core.config import FitConfig, load_config
from sola.data.splice import SpliceConfig, splice_store
from sola.data.stores import open_store
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def real_spliced(tmp_path_factory):
    """24 pseudo-untrimmed videos of real 2048-d I3D features (gym clips)."""
    out = tmp_path_factory.mktemp("real") / "bench"
    splice_store(open_store(shared_path("features", "gym_clips")), out, SpliceConfig(videos=24, seed=5), progress=False)
    return open_store(out / "features")


def test_constant_map_loss_is_the_best_constant():
    target = target_map(8, 16.0)
    grid = torch.linspace(0.01, 0.99, 9801, dtype=torch.float64)
    t = target.double().flatten()
    losses = -(t[None] * grid[:, None].log() + (1 - t[None]) * (1 - grid[:, None]).log()).mean(1)
    assert constant_map_loss(target) == pytest.approx(losses.min().item(), abs=1e-6)
    assert constant_map_loss(target) == pytest.approx(0.3854, abs=1e-4)


def test_spread_figures_by_hand():
    same = torch.ones(6, 4) * torch.tensor([1.0, 2.0, 0.0, 0.0])
    figures = spread_figures(same)
    assert figures["cosine"] == pytest.approx(1.0) and figures["rank"] == pytest.approx(1.0, abs=1e-6)
    figures = spread_figures(torch.eye(5) * 3.0)
    assert figures["cosine"] == pytest.approx(0.0, abs=1e-12) and figures["rank"] == pytest.approx(5.0)


def test_lr_schedule_by_hand():
    assert [lr_factor(s, 10, warmup=4) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert lr_factor(2, 10, warmup=2, schedule="cosine") == 1.0
    assert lr_factor(6, 10, warmup=2, schedule="cosine") == pytest.approx(0.5)
    assert lr_factor(10, 10, warmup=2, schedule="cosine") == pytest.approx(0.0)
    assert steps_per_epoch(videos=10, windows_per_video=3, world_size=2, local_batch=4) == 4  # 5 x 3 = 15 per rank
    assert total_epochs(FitConfig(steps=9), per_epoch=4) == 3


def test_guard_stops_on_frozen_and_non_finite_losses():
    healthy = {"finite": True, "departure": 0.1, "rank_ratio": 1.0, "spread_ratio": 1.0}
    guard = FitGuard(FitConfig(frozen_epochs=3), constant_loss=0.3854)
    assert [guard.check(0.5, healthy) for _ in range(3)] == [None, None, None]
    assert "frozen at 0.500000" in guard.check(0.5, healthy)
    assert "not finite" in FitGuard(FitConfig(), 0.3854).check(float("nan"), healthy)
    assert "not finite" in FitGuard(FitConfig(), 0.3854).check(0.4, {"finite": False})
    varied = FitGuard(FitConfig(frozen_epochs=3), constant_loss=0.3854)
    assert all(varied.check(0.39 + 0.001 * i, healthy) is None for i in range(10))
    assert varied.at_constant_map(0.3855) and not varied.at_constant_map(0.36)


def test_collapsing_schedule_stops_and_keeps_the_last_healthy_adapter(real_spliced, tmp_path, capsys):
    run = tmp_path / "run"
    code = main(["train", str(real_spliced.path), "--out", str(run), "--lr", "2e-2", "--batch-size", "16",
                 "--windows-per-video", "4", "--epochs", "4", "--quiet"])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lower fit.lr" in err and ("departure" in err or "collapse" in err)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "stopped" in last
    health = last["health"]
    assert health["departure"] > 10 or min(health["rank_ratio"], health["spread_ratio"]) < 0.2
    with safe_open(str(run / "adapter.safetensors"), "pt") as handle:  # the last healthy epoch's adapter
        assert handle.metadata()["epoch"] == str(last["epoch"] - 1)
        assert handle.metadata()["stopped_at"] == str(last["epoch"])


def test_collapse_figures_fire_without_a_departure_bound(real_spliced):
    config = load_config(None, {"fit.lr": 2e-2, "fit.batch_size": 16, "fit.windows_per_video": 4,
                                "fit.epochs": 4, "fit.max_departure": float("inf")})
    with pytest.raises(FitDiverged, match="collapse: the adapted features' (effective rank|angular spread)"):
        fit_adapter(real_spliced, config, progress=False, log=lambda s: None)


@pytest.mark.slow
def test_reference_schedule_stays_silent(real_spliced, tmp_path):
    logs = []
    fit_adapter(real_spliced, load_config(None, {}), tmp_path / "run", progress=False, log=logs.append)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 150 and not any("stopped" in r for r in records)
    worst = min(min(r["health"]["rank_ratio"], r["health"]["spread_ratio"]) for r in records)
    assert worst > 0.5 and max(r["health"]["departure"] for r in records) < 1.0


def test_step_budget_overrides_epochs(synthetic_small, tmp_path):
    store = open_store(synthetic_small / "features")
    config = load_config(None, {"adapter.hidden_dim": 16, "matching.projector_dim": 16, "fit.batch_size": 32,
                                "fit.windows_per_video": 4, "fit.steps": 7, "fit.warmup_steps": 2,
                                "fit.schedule": "cosine", "fit.lr": 1e-3, "fit.checkpoint_every": 2})
    fit_adapter(store, config, tmp_path / "run", progress=False, log=lambda s: None)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["steps"] for r in records] == [3, 3, 1]  # 24 videos x 4 windows / 32 = 3 steps an epoch
    assert records[-1]["lr"] == pytest.approx(1e-3 * lr_factor(6, 7, 2, "cosine"))
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert checkpoints == ["epoch_0000.safetensors", "epoch_0002.safetensors", "epoch_0003.safetensors"]
    assert np.isfinite([r["health"]["rank"] for r in records]).all()
