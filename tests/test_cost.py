"""`sola cost`: parameters and FLOPs by hand, activation memory, the encoder row, the CLI."""

import json

import pytest

from sola.cli import main
from sola.core.config import MatchingConfig
from sola.core.errors import ConfigError
from sola.experiments.cost import adapter_cost, count_flops, encoder_cost, format_cost_table, saved_bytes


def test_adapter_parameters_and_forward_flops_match_the_formula():
    dim, hidden, kernel = 24, 8, 3
    row = adapter_cost(dim, hidden, kernel, batch=4, repeats=1)
    # temporal conv C*H*k + H, mix H*H + H, out H*C + C, the gate alpha
    assert row.parameters == dim * hidden * kernel + hidden + hidden * hidden + hidden + hidden * dim + dim + 1
    projector = MatchingConfig().projector_dim
    assert row.trainable == row.parameters + dim * projector + projector + projector * dim + dim
    # a multiply-add is 2 FLOPs: per snippet 2 (C H k + H H + H C)
    assert row.forward_flops_per_snippet == 2 * (dim * hidden * kernel + hidden * hidden + hidden * dim)
    # a training step runs the adapter and the projector at the 8 gathered positions of a window, forward and
    # backward (the backward about twice the forward; the windows themselves need no gradient)
    forward = MatchingConfig().num_positions * (row.forward_flops_per_snippet + 2 * 2 * dim * projector)
    assert 2 * forward < row.train_flops_per_window < 3.5 * forward
    assert row.activation_bytes_per_window > 0 and row.seconds_per_1000_windows > 0
    assert not row.peak_is_measured and row.peak_train_bytes > row.activation_bytes_per_window * 4


def test_saved_bytes_counts_what_autograd_keeps():
    import torch

    x = torch.randn(100, 10, requires_grad=True)
    w = torch.randn(10, 10, requires_grad=True)
    # x @ w saves x and w for the backward pass: (1000 + 100) float32
    assert saved_bytes(lambda: x @ w) == 4 * (1000 + 100)
    assert count_flops(lambda: x @ w) == 2 * 100 * 10 * 10


def test_encoder_row_dwarfs_the_adapter_and_the_table_says_by_how_much():
    adapter = adapter_cost(1024, batch=8, repeats=1)
    encoder = encoder_cost(frames=8, size=32, repeats=1)
    assert encoder.parameters > 12_000_000  # Inception-I3D RGB with its Kinetics-400 logits layer
    assert encoder.train_flops_per_window > 100 * adapter.train_flops_per_window
    assert encoder.activation_bytes_per_window > adapter.activation_bytes_per_window
    table = format_cost_table([adapter, encoder])
    assert "I3D fine-tuning" in table and "the encoder costs x" in table


@pytest.mark.parametrize("kwargs, key", [({"kernel": 4}, "--kernel"), ({"dim": 0}, "--dim"), ({"batch": 0}, "--batch-size")])
def test_bad_sizes_name_the_flag(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        adapter_cost(**{"dim": 8, "hidden": 4, **kwargs})


def test_cost_command(tmp_path, capsys):
    out = tmp_path / "cost.json"
    assert main(["cost", "--dim", "32", "--hidden", "8", "--no-encoder", "--repeats", "1", "--batch-size", "4",
                 "--device", "cpu", "--json", str(out)]) == 0
    assert "SoLa adapter (C=32, H=8, k=5, d=1)" in capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert rows[0]["forward_flops_per_snippet"] == 2 * (32 * 8 * 5 + 8 * 8 + 8 * 32)
    assert main(["cost", "--dim", "32", "--kernel", "4", "--no-encoder"]) == 2
    assert "--kernel must be odd" in capsys.readouterr().err
