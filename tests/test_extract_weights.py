"""Checkpoint safety and conversion rules on small synthetic checkpoints (no download)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from sola.core.errors import ExtractError
from sola.extract.weights import cache_dir, convert_variables, load_flax_checkpoint, weights_path


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_unpickler_rebuilds_nested_dicts_of_arrays():
    variables = {"params": {"Conv3d_1a_7x7": {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(1, 2, 3)}}}}
    loaded = load_flax_checkpoint(pickle.dumps(variables, protocol=4))
    np.testing.assert_array_equal(loaded["params"]["Conv3d_1a_7x7"]["Conv_0"]["kernel"], np.arange(6).reshape(1, 2, 3))


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"params": _Payload()}, "refusing to load posix.system|refusing to load nt.system"),
        ({"params": {"x": np.array([object()], dtype=object)}}, "refusing to load|not a numeric array"),
        ({"params": {"x": [1.0, 2.0]}}, "params/x is list, not a numeric array"),
        ({"params": {1: np.zeros(2)}}, "non-string key"),
    ],
)
def test_unpickler_refuses_anything_but_numeric_arrays(payload, message):
    with pytest.raises(ExtractError, match=message):
        load_flax_checkpoint(pickle.dumps(payload))


def test_conversion_transposes_kernels_and_flattens_batch_norm_statistics():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 5, 7, 4, 6)).astype(np.float32)  # (T, H, W, C_in, C_out)
    variables = {
        "params": {
            "Mixed_3b": {"Branch_1": {"Conv3d_0b_3x3": {
                "Conv_0": {"kernel": kernel}, "BatchNorm_0": {"bias": np.ones(6, np.float32)},
            }}},
            "Logits": {"Conv3d_0c_1x1": {"Conv_0": {"kernel": kernel[:1, :1, :1], "bias": np.zeros(6, np.float32)}}},
        },
        "batch_stats": {
            "Mixed_3b": {"Branch_1": {"Conv3d_0b_3x3": {"BatchNorm_0": {
                "mean": np.arange(6, dtype=np.float32).reshape(1, 1, 1, 1, 6),
                "var": np.full((1, 1, 1, 1, 6), 2.0, np.float32),
            }}}}
        },
    }  # fmt: skip
    state = convert_variables(variables)
    assert sorted(state) == [
        "Logits.Conv3d_0c_1x1.conv.bias",
        "Logits.Conv3d_0c_1x1.conv.weight",
        "Mixed_3b.Branch_1.Conv3d_0b_3x3.bn.bias",
        "Mixed_3b.Branch_1.Conv3d_0b_3x3.bn.running_mean",
        "Mixed_3b.Branch_1.Conv3d_0b_3x3.bn.running_var",
        "Mixed_3b.Branch_1.Conv3d_0b_3x3.conv.weight",
    ]
    weight = state["Mixed_3b.Branch_1.Conv3d_0b_3x3.conv.weight"]
    assert weight.shape == (6, 4, 3, 5, 7)  # (C_out, C_in, T, H, W)
    assert weight[5, 3, 2, 4, 6] == kernel[2, 4, 6, 3, 5] and weight[1, 2, 0, 3, 1] == kernel[0, 3, 1, 2, 1]
    assert state["Mixed_3b.Branch_1.Conv3d_0b_3x3.bn.running_mean"].tolist() == [0, 1, 2, 3, 4, 5]


def test_conversion_refuses_unknown_tensors():
    with pytest.raises(ExtractError, match="unexpected tensor params/Mixed_3b/Dense_0/kernel"):
        convert_variables({"params": {"Mixed_3b": {"Dense_0": {"kernel": np.zeros((2, 2))}}}, "batch_stats": {}})
    with pytest.raises(ExtractError, match="expected params and batch_stats"):
        convert_variables({"params": {}})


def test_cache_location_follows_sola_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("SOLA_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    assert weights_path() == tmp_path / "i3d" / "i3d_kinetics400_rgb.safetensors"
    monkeypatch.delenv("SOLA_CACHE")
    assert cache_dir() == cache_dir().home() / ".cache" / "sola"


def test_unwritable_cache_is_a_one_line_error(tmp_path):
    from sola.extract.weights import ensure_weights

    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(ExtractError, match="cannot write the weights cache .*set SOLA_CACHE"):
        ensure_weights(blocker)
