"""The head's defaults against ActionFormer's published ones (issue 15), checked against hand values.

- dropout 0.0 (ActionFormer's default; its THUMOS14 config does not set it);
- a learnable per-channel scale on each residual branch, initialised to 1e-4, present when drop path
  is on (ActionFormer's AffineDropPath: x + drop_path(scale * branch(x)));
- runs and training states written before the scale existed load, or fail with one clear line;
- `train_head` prints one line per epoch when its output is not a terminal.
"""

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import sola.tal.train as train_module  # noqa: E402
from sola.cli import main  # noqa: E402
from sola.core.errors import CheckpointError, ConfigError  # noqa: E402
from sola.core.runs import STATE  # noqa: E402
from sola.data.synthetic import SyntheticConfig, write_synthetic  # noqa: E402
from sola.tal.blocks import TransformerLayer  # noqa: E402
from sola.tal.config import TalConfig, load_tal_config  # noqa: E402
from sola.tal.data import make_item, pad_batch  # noqa: E402
from sola.tal.model import TalModel  # noqa: E402
from sola.tal.run import load_run, save_run  # noqa: E402
from sola.tal.train import parameter_groups, train_head  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = {"data.input_dim": 8, "data.num_classes": 2, "model.embd_dim": 16, "model.head_dim": 16, "model.n_head": 2,
        "model.window_size": 5, "data.max_seq_len": 64, "train.epochs": 2, "train.warmup_epochs": 1,
        "train.batch_size": 2, "train.lr": 1e-2, "train.ema_decay": 0.5}
EPOCH_LINE = re.compile(r"^tal train: epoch (\d+)/(\d+)  loss (\d+\.\d{4}) \(cls \d+\.\d{4}, reg \d+\.\d{4}\)  "
                        r"lr (\S+)  (\d+\.\d{2}) s$")


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def tiny(**overrides):
    return load_tal_config(None, {**TINY, **overrides})


def items(n=4):
    rng = np.random.default_rng(0)
    return [make_item(f"v{i}", rng.normal(size=(40 + 8 * i, 8)), [[8, 24]], [i % 2], fps=1.0, feat_stride=1.0,
                      num_frames=0.0) for i in range(n)]


def scale_names(model):
    return sorted(name for name, _ in model.named_parameters() if name.endswith(("scale_attn", "scale_mlp")))


# --- dropout ---------------------------------------------------------------------------------------

def test_dropout_default_is_actionformers_zero():
    c = TalConfig()
    assert c.model.dropout == 0.0
    assert (c.model.drop_path, c.model.layer_scale_init) == (0.1, 1e-4)
    for name in ("thumos14_i3d.yaml", "activitynet_tsp.yaml"):  # the published experiments
        m = load_tal_config(CONFIGS / name).model
        assert (m.dropout, m.drop_path, m.layer_scale_init, m.branch_scale_init()) == (0.0, 0.1, 1e-4, 1e-4), name
    model = TalModel(load_tal_config(CONFIGS / "thumos14_i3d.yaml"))
    assert all(module.p == 0.0 for module in model.modules() if isinstance(module, torch.nn.Dropout))


def test_cpu_configs_keep_their_documented_values():
    synthetic = load_tal_config(CONFIGS / "tal_synthetic_cpu.yaml").model
    assert (synthetic.dropout, synthetic.drop_path, synthetic.branch_scale_init()) == (0.0, 0.0, 0.0)
    header = (CONFIGS / "tal_synthetic_cpu.yaml").read_text().split("\ndata:")[0]
    assert "no drop path" in header and "layer_scale_init" in header


# --- the residual-branch scale ---------------------------------------------------------------------

def test_branch_outputs_are_scaled_by_hand():
    torch.manual_seed(0)
    layer = TransformerLayer(8, 2, window=5, mlp_ratio=2, dropout=0.0, drop_path=0.1, layer_scale_init=1e-4).eval()
    x = torch.randn(2, 12, 8)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 9:] = False
    x = x * mask[..., None]
    valid = mask[..., None].float()
    out, out_mask = layer(x, mask)
    with torch.no_grad():  # x + 1e-4 * attn(LN(x)), then + 1e-4 * mlp(LN(.)), computed by hand
        mid = x + 1e-4 * layer.attn(layer.norm_attn(x), mask)
        expected = mid + 1e-4 * layer.mlp(layer.norm_mlp(mid)) * valid
        unscaled_mid = x + layer.attn(layer.norm_attn(x), mask)
    assert torch.equal(out_mask, mask)
    assert torch.allclose(out, expected, atol=1e-6, rtol=0)
    assert not torch.allclose(out, unscaled_mid, atol=1e-3)  # the branch really is shrunk
    assert torch.all(out[~mask] == 0)


def test_scale_is_learnable_and_per_channel():
    torch.manual_seed(1)
    layer = TransformerLayer(8, 2, window=5, mlp_ratio=2, dropout=0.0, drop_path=0.1, layer_scale_init=1e-4).eval()
    for param in (layer.scale_attn, layer.scale_mlp):
        assert param.requires_grad and param.shape == (8,) and torch.all(param == 1e-4)
    with torch.no_grad():  # one factor per channel: set them apart and check channel by channel
        layer.scale_attn.copy_(torch.arange(1.0, 9.0))
        layer.scale_mlp.copy_(torch.linspace(-1.0, 1.0, 8))
    x = torch.randn(1, 10, 8)
    mask = torch.ones(1, 10, dtype=torch.bool)
    out, _ = layer(x, mask)
    with torch.no_grad():
        mid = x + layer.attn(layer.norm_attn(x), mask) * torch.arange(1.0, 9.0)
        expected = mid + layer.mlp(layer.norm_mlp(mid)) * torch.linspace(-1.0, 1.0, 8)
    assert torch.allclose(out, expected, atol=1e-5)
    out.square().sum().backward()
    assert layer.scale_attn.grad.shape == (8,) and torch.all(layer.scale_attn.grad != 0)
    assert layer.scale_mlp.grad.shape == (8,) and torch.all(layer.scale_mlp.grad != 0)


def test_scale_exists_only_with_drop_path_and_a_positive_init():
    model = TalModel(tiny())  # defaults: drop path 0.1, init 1e-4
    layers = len(model.stem) + len(model.branch)
    assert len(scale_names(model)) == 2 * layers
    assert all(torch.all(p == 1e-4) for n, p in model.named_parameters() if n in scale_names(model))
    no_decay = {id(p) for p in parameter_groups(model, 0.05)[1]["params"]}  # no weight decay, as ActionFormer
    assert all(id(p) in no_decay for n, p in model.named_parameters() if n in scale_names(model))
    for overrides in ({"model.drop_path": 0.0}, {"model.layer_scale_init": 0.0}, {"model.layer_scale_init": -1.0}):
        assert scale_names(TalModel(tiny(**overrides))) == [], overrides
    with pytest.raises(ConfigError, match="layer_scale_init"):
        tiny(**{"model.layer_scale_init": float("nan")})


def test_training_moves_the_scale():
    result = train_head(items(), tiny(**{"train.ema_decay": 0.0}), seed=0, progress=False)
    scales = dict(result.model.named_parameters())
    moved = [name for name in scale_names(result.model) if not torch.all(scales[name] == 1e-4)]
    assert moved == scale_names(result.model)


# --- runs and states from before the scale ---------------------------------------------------------

def drop_key(path, key="layer_scale_init"):
    text = path.read_text()
    assert f"  {key}:" in text
    path.write_text("".join(line for line in text.splitlines(keepends=True) if not line.startswith(f"  {key}:")))


def test_old_run_without_the_key_loads_without_scales(tmp_path):
    torch.manual_seed(0)
    config = tiny(**{"model.layer_scale_init": 0.0})  # what an old head was
    model = TalModel(config).eval()
    save_run(tmp_path, model, config, ["a", "b"])
    drop_key(tmp_path / "config.yaml")
    loaded, loaded_config, _ = load_run(tmp_path)
    assert loaded_config.model.layer_scale_init == 0.0 and scale_names(loaded) == []
    feats, mask = pad_batch([torch.randn(40, 8)], 32)
    assert torch.equal(loaded(feats, mask)["cls_logits"], model(feats, mask)["cls_logits"])


def test_weights_without_the_scale_fail_with_one_clear_line(tmp_path, capsys):
    config = tiny(**{"model.layer_scale_init": 0.0})
    save_run(tmp_path, TalModel(config), config, ["a", "b"])
    text = (tmp_path / "config.yaml").read_text().replace("layer_scale_init: 0.0", "layer_scale_init: 0.0001")
    (tmp_path / "config.yaml").write_text(text)  # a config that asks for scales the weights lack
    with pytest.raises(CheckpointError, match=r"weights do not match config.yaml \(Missing key\(s\).*scale_attn"):
        load_run(tmp_path)
    (tmp_path / "features").mkdir()
    assert main(["tal", "infer", str(tmp_path), str(tmp_path / "features"), "--annotations",
                 str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "scale_attn" in err


def test_old_training_state_fails_naming_the_new_key(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    train_head(items(), tiny(), seed=0, progress=False, state_dir=tmp_path)
    path = tmp_path / STATE
    with safe_open(str(path), framework="pt") as handle:  # rewrite it as an older sola would have
        metadata, tensors = handle.metadata(), {key: handle.get_tensor(key) for key in handle.keys()}
    state = json.loads(metadata["state"])
    del state["fingerprint"]["config"]["model"]["layer_scale_init"]
    metadata["state"] = json.dumps(state)
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=r"differs in config \(model.layer_scale_init \(not in the saved run\)\)"):
        train_head(items(), tiny(), seed=0, progress=False, state_dir=tmp_path, resume=True)


# --- one line per epoch off a terminal -------------------------------------------------------------

def test_one_line_per_epoch_when_not_a_terminal(capsys):
    result = train_head(items(), tiny(), seed=0)  # progress=None; captured stderr is not a terminal
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("tal train: epoch")]
    assert len(lines) == len(result.history) == 3
    assert "it/s" not in err  # and no progress bar
    for line, record in zip(lines, result.history):
        match = EPOCH_LINE.match(line)
        assert match, line
        epoch, total, loss, lr, seconds = match.groups()
        assert (int(epoch), int(total)) == (record["epoch"], 3)
        assert loss == f"{record['loss']:.4f}" and seconds == f"{record['seconds']:.2f}"
        assert float(lr) == pytest.approx(record["lr"], rel=1e-2) and float(lr) > 0


def test_quiet_and_terminal_print_no_epoch_lines(capsys, monkeypatch):
    train_head(items(), tiny(), seed=0, progress=False)
    assert capsys.readouterr().err == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(train_module.sys, "stderr", terminal)
    train_head(items(), tiny(), seed=0)
    monkeypatch.undo()
    assert "tal train: epoch" not in terminal.getvalue() and "tal train" in terminal.getvalue()  # the bar instead


def test_cli_train_prints_epochs_unless_quiet(tmp_path, capsys):
    data = tmp_path / "data"
    write_synthetic(data, SyntheticConfig(videos=8, dim=8, classes=2, min_length=40, max_length=64, max_action=16,
                                          max_gap=12, seed=0), progress=False)
    sets = [arg for key, value in TINY.items() if not key.startswith("data.")
            for arg in ("--set", f"{key}={value}")] + ["--set", "data.max_seq_len=64"]

    def train(out, *extra):
        capsys.readouterr()
        code = main(["tal", "train", str(data / "features"), "--annotations", str(data / "annotations.json"),
                     "--out", str(out), "--seed", "0", *sets, *extra])
        assert code == 0
        return capsys.readouterr().err

    err = train(tmp_path / "loud")
    lines = [line for line in err.splitlines() if line.startswith("tal train: epoch")]
    assert [EPOCH_LINE.match(line).group(1) for line in lines] == ["1", "2", "3"]
    assert "tal train: epoch" not in train(tmp_path / "quiet", "--quiet")
