import numpy as np
import pytest
import torch

from sola.adapt.adapter import SoLaAdapter, load_adapter, save_adapter
from sola.adapt.transform import apply_adapter
from sola.core.errors import CheckpointError


def test_reference_architecture_and_identity_at_init():
    adapter = SoLaAdapter(64)
    assert (adapter.temporal.in_channels, adapter.temporal.out_channels) == (64, 512)
    assert adapter.temporal.kernel_size == (5,) and adapter.temporal.padding == (2,)
    assert adapter.mix.kernel_size == (1,) and adapter.out.out_channels == 64
    assert float(adapter.alpha.detach()) == 0.0 and adapter.gate == 0.0
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)) for m in adapter.modules())
    x = torch.randn(3, 40, 64)
    assert torch.equal(adapter(x), x)


def test_shape_kept_and_output_moves_with_gate():
    adapter = SoLaAdapter(8, hidden_dim=16)
    with torch.no_grad():
        adapter.alpha.fill_(0.5)
    x = torch.randn(2, 11, 8)
    y = adapter(x)
    assert y.shape == x.shape
    expected = x + torch.tanh(torch.tensor(0.5)) * adapter.residual(x)
    torch.testing.assert_close(y, expected)
    assert not torch.allclose(y, x)


def test_temporal_receptive_field_is_kernel_wide():
    torch.manual_seed(0)  # a few random inits (< 1%) leave a tap with all-dead ReLUs
    adapter = SoLaAdapter(4, hidden_dim=8, kernel_size=5, dilation=2)
    with torch.no_grad():
        adapter.alpha.fill_(1.0)
    x = torch.randn(1, 30, 4)
    bumped = x.clone()
    bumped[0, 15] += 1.0
    changed = (adapter(bumped) - adapter(x)).abs().sum(-1)[0] > 0
    assert changed.nonzero().flatten().tolist() == [11, 13, 15, 17, 19]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_apply_adapter_keeps_dtype_and_identity_is_exact(dtype):
    features = np.random.default_rng(0).standard_normal((50, 8)).astype(dtype)
    out = apply_adapter(SoLaAdapter(8, hidden_dim=16), features)
    assert out.dtype == dtype and out.shape == features.shape
    assert np.array_equal(out, features)


def test_chunked_transform_equals_one_pass():
    adapter = SoLaAdapter(6, hidden_dim=12, kernel_size=5, dilation=3)
    with torch.no_grad():
        adapter.alpha.fill_(0.8)
    features = np.random.default_rng(1).standard_normal((257, 6)).astype(np.float32)
    whole = apply_adapter(adapter, features, chunk_size=10_000)
    for chunk in (1, 7, 64, 256):
        np.testing.assert_allclose(apply_adapter(adapter, features, chunk_size=chunk), whole, rtol=0, atol=1e-5)


def test_save_load_roundtrip_and_errors(tmp_path):
    adapter = SoLaAdapter(10, hidden_dim=20, kernel_size=3, dilation=2)
    with torch.no_grad():
        adapter.alpha.fill_(0.3)
    path = save_adapter(adapter, tmp_path / "adapter.safetensors", {"epoch": 7})
    loaded = load_adapter(path)
    assert (loaded.dim, loaded.hidden_dim, loaded.kernel_size, loaded.dilation) == (10, 20, 3, 2)
    for key, value in adapter.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert load_adapter(tmp_path).gate == pytest.approx(adapter.gate)  # run directory form
    (tmp_path / "bad.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_adapter(tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_adapter(tmp_path / "missing.safetensors")


def test_nonfinite_weights_are_neither_saved_nor_loaded(tmp_path):
    from sola.adapt.adapter import adapter_metadata
    from sola.core.runs import write_safetensors

    adapter = SoLaAdapter(6, hidden_dim=4)
    with torch.no_grad():
        adapter.mix.weight[0, 0] = float("nan")
        adapter.alpha.fill_(float("inf"))
    with pytest.raises(CheckpointError, match=r"diverged.*fit.lr") as raised:
        save_adapter(adapter, tmp_path / "adapter.safetensors")
    assert "mix.weight" in str(raised.value) and "alpha" in str(raised.value)
    assert list(tmp_path.iterdir()) == []
    tensors = {name: t.contiguous() for name, t in adapter.state_dict().items()}
    write_safetensors(tmp_path / "diverged.safetensors", tensors, adapter_metadata(adapter))  # an older sola
    with pytest.raises(CheckpointError, match=r"diverged.safetensors: .*NaN/Inf"):
        load_adapter(tmp_path / "diverged.safetensors")


def test_apply_adapter_rejects_wrong_dim():
    from sola.core.errors import StoreError

    with pytest.raises(StoreError, match="dim 8"):
        apply_adapter(SoLaAdapter(8, hidden_dim=4), np.zeros((5, 9), dtype=np.float32))


def test_residual_at_gathered_positions_equals_full_pass():
    torch.manual_seed(0)
    adapter = SoLaAdapter(6, hidden_dim=10, kernel_size=5, dilation=2)
    x = torch.randn(3, 23, 6)
    positions = torch.tensor([4, 6, 9, 18])
    torch.testing.assert_close(adapter.residual_at(x, positions), adapter.residual(x)[:, positions])
