"""Configs of the built-in TAL head; defaults are the published ActionFormer THUMOS14 (I3D) values.

Four sections, one dataclass each: `data` (snippet grid, truncation, resizing), `model`
(projection, backbone, neck, heads), `train` (assignment, losses, optimiser, schedule, EMA) and
`test` (decoding, Soft-NMS, voting, evaluation). A YAML file overrides any key; `load_tal_config`
checks every value and raises `ConfigError` naming the key and the fix.

Units: everything positional in `model` and `train` is in snippets of the input feature grid;
`data.feat_stride` and `data.num_frames` are in frames; `test.duration_thresh` is in snippets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from sola.core.config import COUNT, SEED, SIZE, SectionedConfig, ranged, require_config_memory
from sola.core.errors import ConfigError

TRAINING_MODES = ("baseline", "unified", "unified+sm")  # how the head is trained (sola.tal.unified)


def validate_tal_config(config: TalConfig) -> None:
    """Raise `ConfigError` for values inconsistent between keys or sections, or beyond this machine's memory
    (the range of each value is checked before, beside its field)."""
    d, m, t, s = config.data, config.model, config.train, config.test
    if m.embd_dim % m.n_head:
        raise ConfigError(f"model.embd_dim ({m.embd_dim}) must be divisible by model.n_head ({m.n_head})")
    if m.embd_kernel_size % 2 == 0 or m.head_kernel_size % 2 == 0:
        raise ConfigError("model.embd_kernel_size and model.head_kernel_size must be odd")
    levels = config.num_levels()
    if len(m.regression_range) != levels:
        raise ConfigError(
            f"model.regression_range has {len(m.regression_range)} ranges but the pyramid has {levels} "
            f"levels (model.branch_layers + 1); give one [low, high] per level"
        )
    for low_high in m.regression_range:
        if len(low_high) != 2 or not low_high[0] < low_high[1]:
            raise ConfigError(f"model.regression_range entries must be [low, high] with low < high, got {low_high}")
    if isinstance(m.window_size, list) and len(m.window_size) != levels:
        raise ConfigError(
            f"model.window_size lists {len(m.window_size)} windows but the pyramid has {levels} levels"
        )
    stride = 2 ** m.branch_layers
    if d.max_seq_len % stride:
        raise ConfigError(f"data.max_seq_len ({d.max_seq_len}) must be a multiple of 2**branch_layers = {stride}")
    if d.resize_to and d.resize_to % stride:
        raise ConfigError(f"data.resize_to ({d.resize_to}) must be a multiple of 2**branch_layers = {stride}")
    if d.crop_ratio is not None and (len(d.crop_ratio) != 2 or not d.crop_ratio[0] <= d.crop_ratio[1]):
        raise ConfigError(f"data.crop_ratio must be null or [low, high] with 0 < low <= high <= 1, got {d.crop_ratio}")
    if s.nms_method not in ("soft", "hard", "none"):
        raise ConfigError(f"test.nms_method must be soft, hard or none, got {s.nms_method!r}")
    if not s.tiou_thresholds:
        raise ConfigError("test.tiou_thresholds must be a non-empty list in (0, 1), got []")
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {t.device!r}")
    keys = ["data.input_dim", "data.num_classes", "data.max_seq_len", "data.resize_to", "model.embd_dim",
            "model.embd_kernel_size", "model.embd_layers", "model.stem_layers", "model.mlp_ratio", "model.head_dim",
            "model.head_kernel_size", "model.head_layers", "train.batch_size"]
    require_config_memory(config, tal_bytes(config), keys, "the head's weights and one batch")


def tal_bytes(config: TalConfig) -> float:
    """A lower bound of the bytes the head holds: its float32 weights and one batch of inputs and embeddings."""
    d, m = config.data, config.model
    embd, head, layers = m.embd_dim, m.head_dim, m.stem_layers + m.branch_layers
    projection = d.input_dim * embd * m.embd_kernel_size + max(m.embd_layers - 1, 0) * embd * embd * m.embd_kernel_size
    transformer = layers * (4 + 2 * m.mlp_ratio) * embd * embd
    heads = (2 * embd * head + 2 * max(m.head_layers - 2, 0) * head * head
             + head * (d.num_classes + 2)) * m.head_kernel_size
    length = d.resize_to or d.max_seq_len
    batch = config.train.batch_size * length * (d.input_dim + embd * max(layers, 1))
    return 4.0 * (projection + transformer + heads + batch)


@dataclass
class TalDataConfig:
    """The snippet grid, the subsets and the training-time augmentation."""

    num_classes: int = ranged(20, 1, SIZE)
    input_dim: int = ranged(2048, 1, SIZE)
    feat_stride: float = ranged(4.0, 0.0, 4096.0, above=True)  # frames between two snippets, when the annotations do not say
    num_frames: float = ranged(16.0, 0.0, 4096.0)  # frames seen by one snippet; its centre is num_frames / 2 after its start
    default_fps: float = ranged(0.0, 0.0, 1000.0)  # 0: take the fps from the annotations
    max_seq_len: int = ranged(2304, 1, SIZE)  # training windows are truncated to this many snippets
    trunc_thresh: float = ranged(0.5, 0.0, 1.0)  # keep a cut action only if this fraction of it stays in the window
    crop_ratio: list[float] | None = ranged(low=0.0, high=1.0, above=True, factory=lambda: [0.9, 1.0])  # null: no random crop
    resize_to: int = ranged(0, 0, SIZE)  # 0: native length; >0: every video resized to this many snippets (ActivityNet: 192)
    train_subset: str = "validation"
    test_subset: str = "test"


@dataclass
class TalModelConfig:
    """Projection -> local-window transformer pyramid -> identity neck -> shared heads."""

    embd_dim: int = ranged(512, 1, SIZE)
    embd_kernel_size: int = ranged(3, 1, 4095)
    embd_layers: int = ranged(2, 0, 1024)  # Conv1d -> LayerNorm -> ReLU, repeated
    stem_layers: int = ranged(2, 0, 1024)  # transformer layers at full resolution
    branch_layers: int = ranged(5, 0, 24)  # each halves the length: a pyramid of branch_layers + 1 levels
    n_head: int = ranged(4, 1, 4096)
    window_size: int | list[int] = ranged(19, -1, SIZE)  # local attention window; <= 1 means global; a list gives one per level
    mlp_ratio: int = ranged(4, 1, 1024)
    dropout: float = ranged(0.0, 0.0, 1.0, below=True)  # on the attention and MLP outputs; ActionFormer's default, unset in its THUMOS14 config
    drop_path: float = ranged(0.1, 0.0, 1.0, below=True)  # stochastic depth of each residual branch
    # Learnable per-channel scale on each residual branch (attention and MLP): x + drop_path(scale * branch(x)),
    # initialised to this value (ActionFormer's AffineDropPath). As in ActionFormer the scale exists only when
    # drop_path > 0; <= 0 turns it off (branches added unscaled).
    layer_scale_init: float = ranged(1e-4, -1e3, 1e3)
    use_abs_pe: bool = False  # sinusoidal position encoding added after the projection
    head_dim: int = ranged(512, 1, SIZE)
    head_kernel_size: int = ranged(3, 1, 4095)
    head_layers: int = ranged(3, 1, 1024)  # convs per head, the last one predicts
    regression_range: list[list[float]] = ranged(
        low=0.0, high=1e12, factory=lambda: [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]]
    )  # per level, in snippets of the input grid (as ActionFormer's point generator)

    def branch_scale_init(self) -> float:
        """Initial value of the residual-branch scales; 0.0 when the layers have none.

        ActionFormer's rule: the scales exist when drop path is on (`drop_path > 0`); `layer_scale_init <= 0`
        turns them off.
        """
        return float(self.layer_scale_init) if self.layer_scale_init > 0 and self.drop_path > 0 else 0.0


@dataclass
class TalTrainConfig:
    """Assignment, losses, AdamW with warm-up + cosine, gradient clipping, model EMA."""

    epochs: int = ranged(30, 1, COUNT)  # cosine epochs after the warm-up (total = warmup_epochs + epochs)
    warmup_epochs: int = ranged(5, 0, COUNT)
    batch_size: int = ranged(2, 1, SIZE)
    lr: float = ranged(1e-4, 0.0, 1e3, above=True)
    weight_decay: float = ranged(0.05, 0.0, 1e3)
    clip_grad_norm: float = ranged(1.0, -1e6, 1e6)  # <= 0 disables clipping
    ema_decay: float = ranged(0.999, 0.0, 1.0, below=True)  # model EMA used for evaluation; 0 disables it
    center_sample_radius: float = ranged(1.5, 0.0, 1e6, above=True)  # in strides of the point's level
    cls_prior_prob: float = ranged(0.01, 0.0, 1.0, above=True, below=True)
    focal_alpha: float = ranged(0.25, 0.0, 1.0, below=True)
    focal_gamma: float = ranged(2.0, 0.0, 100.0)
    loss_weight: float = ranged(1.0, 0.0, 1e6)  # weight of the DIoU regression loss
    init_loss_norm: float = ranged(100.0, 0.0, 1e12, above=True)  # initial value of the EMA of the positive count
    loss_norm_momentum: float = ranged(0.9, 0.0, 1.0, below=True)
    label_smoothing: float = ranged(0.0, 0.0, 1.0, below=True)
    seed: int = ranged(0, *SEED)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = ranged(-1, -1, 1024)  # batch-loading processes; -1: 0 on the CPU, 4 on CUDA (pinned memory)


@dataclass
class TalTestConfig:
    """Decoding, per-class Gaussian Soft-NMS, score voting, evaluation thresholds."""

    pre_nms_thresh: float = ranged(0.001, 0.0, 1.0)
    pre_nms_topk: int = ranged(2000, 1, COUNT)  # candidates per pyramid level
    duration_thresh: float = ranged(0.05, 0.0, 1e9)  # drop decoded segments shorter than this (snippets)
    nms_method: str = "soft"  # soft | hard | none
    nms_sigma: float = ranged(0.5, 0.0, 1e6, above=True)  # Gaussian Soft-NMS: score *= exp(-iou^2 / sigma)
    iou_threshold: float = ranged(0.1, 0.0, 1.0)  # only for nms_method: hard
    multiclass_nms: bool = True  # per-class NMS; false: class-agnostic
    voting_thresh: float = ranged(0.7, 0.0, 1.0, below=True)  # score voting on boundaries; 0 disables it
    max_seg_num: int = ranged(200, 1, COUNT)  # segments kept per video
    min_score: float = ranged(0.001, 0.0, 1.0)
    tiou_thresholds: list[float] = ranged(low=0.0, high=1.0, above=True, below=True, factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])
    video_scores: str = ""  # ActivityNet protocol: JSON {video_id: {label: score}} fused with proposals
    video_score_topk: int = ranged(2, 1, COUNT)  # classes per proposal taken from video_scores


class TalConfig(SectionedConfig, check=validate_tal_config):
    """Everything the TAL head needs: data, model, train, test."""

    data: TalDataConfig
    model: TalModelConfig
    train: TalTrainConfig
    test: TalTestConfig

    def num_levels(self) -> int:
        """Pyramid levels: the stem output plus one per branch layer."""
        return self.model.branch_layers + 1

    def level_windows(self) -> list[int]:
        """Attention window of each pyramid level (the stem uses level 0's)."""
        window = self.model.window_size
        return list(window) if isinstance(window, list) else [window] * self.num_levels()


def load_tal_config(path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> TalConfig:
    """`TalConfig.load`: a YAML config (or a shipped one by name) over the THUMOS14 defaults,
    `{"train.epochs": 3}` overrides, validated; raises `ConfigError` naming the file or key."""
    return TalConfig.load(path, overrides)


def save_tal_config(config: TalConfig, path: str | os.PathLike) -> None:
    """`config.save(path)`: the config as YAML, atomically."""
    config.save(path)
