"""Unified training: the SoLa adapter in front of the head, with and without Similarity Matching."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sola.core.config import SoLaConfig  # noqa: E402
from sola.core.errors import ConfigError  # noqa: E402
from sola.tal.config import load_tal_config  # noqa: E402
from sola.tal.data import make_item  # noqa: E402
from sola.tal.infer import predict_items  # noqa: E402
from sola.tal.run import load_run, save_run  # noqa: E402
from sola.tal.train import train_head  # noqa: E402
from sola.tal.unified import MatchingAuxiliary, unified_parts  # noqa: E402


def config():
    return load_tal_config(None, {"data.input_dim": 8, "data.num_classes": 2, "model.embd_dim": 16,
                                  "model.head_dim": 16, "model.window_size": 5, "model.dropout": 0.0,
                                  "model.drop_path": 0.0, "data.max_seq_len": 128, "train.epochs": 1,
                                  "train.warmup_epochs": 1, "train.batch_size": 2, "train.lr": 1e-2,
                                  "train.ema_decay": 0.5})


def small_sola():
    sola = SoLaConfig()
    sola.adapter.hidden_dim = sola.matching.projector_dim = 16
    return sola


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def items(n=4):
    rng = np.random.default_rng(0)
    return [make_item(f"v{i}", rng.normal(size=(60 + 10 * i, 8)), [[10, 30]], [i % 2], fps=1.0, feat_stride=1.0,
                      num_frames=0.0) for i in range(n)]


def test_matching_windows_never_touch_padding():
    adapter, auxiliary = unified_parts("unified+sm", 8, small_sola())
    feats = torch.randn(3, 64, 8)
    mask = torch.zeros(3, 64, dtype=torch.bool)
    mask[0, :64] = True
    mask[1, :30] = True
    mask[2, :10] = True  # shorter than the 23-snippet window: contributes nothing
    feats[~mask] = float("nan")
    for _ in range(5):
        assert torch.isfinite(auxiliary(feats, mask))
    assert isinstance(auxiliary, MatchingAuxiliary) and auxiliary.matching.adapter is adapter
    assert float(auxiliary(feats, torch.zeros_like(mask))) == 0.0


@pytest.mark.parametrize("mode", ["unified", "unified+sm"])
def test_unified_training_moves_the_adapter_and_round_trips(mode, tmp_path):
    cfg = config()
    adapter, auxiliary = unified_parts(mode, 8, small_sola())
    projector = None if auxiliary is None else [p.detach().clone() for p in auxiliary.matching.projector.parameters()]
    result = train_head(items(), cfg, seed=0, progress=False, adapter=adapter, auxiliary=auxiliary)
    assert float(adapter.alpha.detach()) != 0.0  # the gate opened: the TAL loss reaches the adapter
    assert result.model.adapter is not None and result.model.adapter is not adapter  # the EMA copy
    if auxiliary is not None:
        assert result.history[0]["aux_loss"] > 0
        moved = [p for p, q in zip(auxiliary.matching.projector.parameters(), projector) if not torch.equal(p, q)]
        assert moved  # Similarity Matching is optimised too
    save_run(tmp_path, result.model, cfg, ["a", "b"], result.history)
    model, _, _ = load_run(tmp_path)
    first = predict_items(result.model, items(1), cfg, progress=False)["v0"]
    again = predict_items(model, items(1), cfg, progress=False)["v0"]
    assert np.allclose(first["scores"], again["scores"], atol=1e-5)


def test_unknown_mode():
    with pytest.raises(ConfigError, match="unknown TAL training mode"):
        unified_parts("sola-ish", 8)
