import pytest

from sola.core.config import SoLaConfig, load_config, save_config
from sola.core.errors import ConfigError


def test_defaults_equal_the_reference():
    c = SoLaConfig()
    assert (c.adapter.hidden_dim, c.adapter.kernel_size, c.adapter.dilation) == (512, 5, 1)
    m = c.matching
    assert (m.window, m.step, m.start, m.num_positions, m.target_k, m.projector_dim) == (23, 2, 4, 8, 16.0, 512)
    assert m.clamp_eps == 1e-5
    f = c.fit
    assert (f.lr, f.weight_decay, f.batch_size, f.epochs, f.checkpoint_every, f.windows_per_video) == (
        1e-4, 0.01, 256, 150, 10, 1
    )
    c.validate()


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"matching.start": 1}, "sees the zero padding"),  # first position inside the k=5 padding
        ({"matching.num_positions": 10}, "sees the zero padding"),  # 4 + 2*9 = 22 > 20
        ({"matching.window": 20}, "sees the zero padding"),
        ({"adapter.kernel_size": 9, "matching.start": 3}, "sees the zero padding"),
        ({"adapter.dilation": 3}, "sees the zero padding"),  # radius 6 > start 4
        ({"adapter.kernel_size": 4}, "odd"),
        ({"matching.step": 0}, "positive"),
        ({"fit.batch_size": -1}, "positive"),
        ({"fit.lr": 0}, "fit.lr"),
        ({"fit.device": "tpu"}, "fit.device"),
    ],
)
def test_invalid_geometry_and_values_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_valid_custom_geometry():
    config = load_config(None, {"matching.window": 31, "matching.num_positions": 12, "matching.start": 4})
    assert config.matching.num_positions == 12


def test_yaml_round_trip_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("fit:\n  epochs: 3\n  lr: 1e-3\nadapter:\n  hidden_dim: 64\n")
    config = load_config(path, {"fit.epochs": 5})
    assert (config.fit.epochs, config.fit.lr, config.adapter.hidden_dim) == (5, 1e-3, 64)
    save_config(config, tmp_path / "out.yaml")
    assert load_config(tmp_path / "out.yaml") == config


def test_unknown_keys_and_bad_types(tmp_path):
    with pytest.raises(ConfigError, match="fit.epoch"):
        SoLaConfig.from_dict({"fit": {"epoch": 3}})
    with pytest.raises(ConfigError, match="unknown section"):
        SoLaConfig.from_dict({"training": {}})
    with pytest.raises(ConfigError, match="must be an integer"):
        SoLaConfig.from_dict({"fit": {"epochs": "many"}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("fit: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
