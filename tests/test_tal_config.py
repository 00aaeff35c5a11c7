"""TAL configs: the defaults are the published ActionFormer THUMOS14 values; YAML overrides them."""

from pathlib import Path

import pytest

from sola.core.errors import ConfigError
from sola.tal.config import TalConfig, load_tal_config, save_tal_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_published_thumos14_values():
    c = TalConfig()
    assert (c.model.embd_layers, c.model.embd_dim, c.model.embd_kernel_size) == (2, 512, 3)
    assert (c.model.stem_layers, c.model.branch_layers, c.num_levels()) == (2, 5, 6)
    assert (c.model.window_size, c.model.n_head, c.model.drop_path) == (19, 4, 0.1)
    assert (c.model.head_layers, c.model.head_kernel_size, c.train.cls_prior_prob) == (3, 3, 0.01)
    assert c.model.regression_range == [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]]
    assert (c.train.center_sample_radius, c.train.focal_alpha, c.train.focal_gamma) == (1.5, 0.25, 2.0)
    assert (c.train.init_loss_norm, c.train.loss_weight) == (100, 1.0)
    assert (c.train.lr, c.train.weight_decay, c.train.warmup_epochs, c.train.epochs) == (1e-4, 0.05, 5, 30)
    assert (c.train.batch_size, c.train.clip_grad_norm) == (2, 1.0)
    assert (c.data.max_seq_len, c.data.trunc_thresh, c.data.crop_ratio) == (2304, 0.5, [0.9, 1.0])
    assert (c.test.pre_nms_thresh, c.test.pre_nms_topk, c.test.nms_method, c.test.nms_sigma) == (0.001, 2000, "soft", 0.5)
    assert (c.test.voting_thresh, c.test.max_seg_num, c.test.min_score) == (0.7, 200, 0.001)
    assert c.test.multiclass_nms is True


def test_shipped_configs_load():
    thumos = load_tal_config(CONFIGS / "thumos14_i3d.yaml")
    assert thumos.data.input_dim == 2048 and thumos.data.num_classes == 20 and thumos.model.window_size == 19
    anet = load_tal_config(CONFIGS / "activitynet_tsp.yaml")
    assert anet.data.resize_to == 192 and anet.data.num_classes == 1 and anet.data.input_dim == 512
    assert anet.test.tiou_thresholds[0] == 0.5 and anet.test.tiou_thresholds[-1] == 0.95
    small = load_tal_config(CONFIGS / "tal_synthetic_cpu.yaml")
    assert small.model.embd_dim < thumos.model.embd_dim


def test_yaml_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n  lr: 1e-3\nmodel:\n  window_size: [5, 5, 5, 5, 5, -1]\n")
    config = load_tal_config(path, {"train.batch_size": 4})
    assert (config.train.epochs, config.train.lr, config.train.batch_size) == (3, 1e-3, 4)
    assert config.level_windows() == [5, 5, 5, 5, 5, -1]
    save_tal_config(config, tmp_path / "saved.yaml")
    assert load_tal_config(tmp_path / "saved.yaml") == config


@pytest.mark.parametrize("text,match", [
    ("train:\n  epoch: 3\n", "unknown key train.epoch"),
    ("modle:\n  n_head: 2\n", "unknown section 'modle'"),
    ("train:\n  epochs: three\n", "train.epochs must be an integer"),
    ("model:\n  embd_dim: 30\n  n_head: 4\n", "divisible"),
    ("model:\n  branch_layers: 3\n", "regression_range has 6 ranges but the pyramid has 4"),
    ("test:\n  nms_method: fast\n", "soft, hard or none"),
])
def test_bad_configs_name_the_key(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_tal_config(path)
    assert str(path) in str(info.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_tal_config(tmp_path / "nope.yaml")
