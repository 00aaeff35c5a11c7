"""Configs of the built-in TAL head; defaults are the published ActionFormer THUMOS14 (I3D) values.

Four sections, one dataclass each: `data` (snippet grid, truncation, resizing), `model`
(projection, backbone, neck, heads), `train` (assignment, losses, optimiser, schedule, EMA) and
`test` (decoding, Soft-NMS, voting, evaluation). A YAML file overrides any key; `load_tal_config`
checks every value and raises `ConfigError` naming the key and the fix.

Units: everything positional in `model` and `train` is in snippets of the input feature grid;
`data.feat_stride` and `data.num_frames` are in frames; `test.duration_thresh` is in snippets.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any

from sola.core.config import SectionedConfig, check_positive_integers
from sola.core.errors import ConfigError

TRAINING_MODES = ("baseline", "unified", "unified+sm")  # how the head is trained (sola.tal.unified)


def validate_tal_config(config: TalConfig) -> None:
    """Raise `ConfigError` for values out of range or inconsistent between sections."""
    d, m, t, s = config.data, config.model, config.train, config.test
    for section, values in dataclasses.asdict(config).items():  # NaN would pass every comparison below
        for name, value in values.items():
            if any(isinstance(x, float) and not math.isfinite(x) for x in _leaves(value)):
                raise ConfigError(f"{section}.{name} must be finite (no NaN or Inf), got {value}")
    positive = {
        "data.num_classes": d.num_classes,
        "data.input_dim": d.input_dim,
        "data.max_seq_len": d.max_seq_len,
        "model.embd_dim": m.embd_dim,
        "model.embd_kernel_size": m.embd_kernel_size,
        "model.n_head": m.n_head,
        "model.mlp_ratio": m.mlp_ratio,
        "model.head_dim": m.head_dim,
        "model.head_kernel_size": m.head_kernel_size,
        "model.head_layers": m.head_layers,
        "train.epochs": t.epochs,
        "train.batch_size": t.batch_size,
        "test.pre_nms_topk": s.pre_nms_topk,
        "test.max_seg_num": s.max_seg_num,
    }
    check_positive_integers(positive)
    for name, value in {"model.embd_layers": m.embd_layers, "model.stem_layers": m.stem_layers,
                        "model.branch_layers": m.branch_layers, "train.warmup_epochs": t.warmup_epochs,
                        "data.resize_to": d.resize_to}.items():
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
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
    if d.feat_stride <= 0 or d.num_frames < 0 or d.default_fps < 0:
        raise ConfigError("data.feat_stride must be > 0 and data.num_frames, data.default_fps >= 0")
    if not 0 <= d.trunc_thresh <= 1:
        raise ConfigError(f"data.trunc_thresh must be in [0, 1], got {d.trunc_thresh}")
    if d.crop_ratio is not None and (len(d.crop_ratio) != 2 or not 0 < d.crop_ratio[0] <= d.crop_ratio[1] <= 1):
        raise ConfigError(f"data.crop_ratio must be null or [low, high] with 0 < low <= high <= 1, got {d.crop_ratio}")
    for name, value in {"model.dropout": m.dropout, "model.drop_path": m.drop_path,
                        "train.label_smoothing": t.label_smoothing, "train.ema_decay": t.ema_decay,
                        "train.loss_norm_momentum": t.loss_norm_momentum, "train.focal_alpha": t.focal_alpha,
                        "train.cls_prior_prob": t.cls_prior_prob, "test.voting_thresh": s.voting_thresh}.items():
        if not 0 <= value < 1 or (name == "train.cls_prior_prob" and value == 0):
            raise ConfigError(f"{name} must be in [0, 1), got {value}")
    if not math.isfinite(m.layer_scale_init):
        raise ConfigError(f"model.layer_scale_init must be a finite number (<= 0 turns it off), "
                          f"got {m.layer_scale_init}")
    if t.lr <= 0 or t.weight_decay < 0 or t.init_loss_norm <= 0 or t.center_sample_radius <= 0:
        raise ConfigError("train.lr, train.init_loss_norm, train.center_sample_radius must be > 0 "
                          "and train.weight_decay >= 0")
    if s.nms_method not in ("soft", "hard", "none"):
        raise ConfigError(f"test.nms_method must be soft, hard or none, got {s.nms_method!r}")
    if s.nms_sigma <= 0:
        raise ConfigError(f"test.nms_sigma must be > 0, got {s.nms_sigma}")
    if not s.tiou_thresholds or not all(0 < x < 1 for x in s.tiou_thresholds):
        raise ConfigError(f"test.tiou_thresholds must be a non-empty list in (0, 1), got {s.tiou_thresholds}")
    if not isinstance(t.num_workers, int) or t.num_workers < -1:
        raise ConfigError(f"train.num_workers must be -1 (auto), 0 (load in the training process) or more, "
                          f"got {t.num_workers!r}")
    if not (t.device in ("auto", "cpu", "cuda") or t.device.startswith("cuda:")):
        raise ConfigError(f"train.device must be auto, cpu, cuda or cuda:N, got {t.device!r}")


@dataclass
class TalDataConfig:
    """The snippet grid, the subsets and the training-time augmentation."""

    num_classes: int = 20
    input_dim: int = 2048
    feat_stride: float = 4.0  # frames between two snippets, when the annotations do not say
    num_frames: float = 16.0  # frames seen by one snippet; its centre is num_frames / 2 after its start
    default_fps: float = 0.0  # 0: take the fps from the annotations
    max_seq_len: int = 2304  # training windows are truncated to this many snippets
    trunc_thresh: float = 0.5  # keep a cut action only if this fraction of it stays in the window
    crop_ratio: list[float] | None = field(default_factory=lambda: [0.9, 1.0])  # null: no random crop
    resize_to: int = 0  # 0: native length; >0: every video resized to this many snippets (ActivityNet: 192)
    train_subset: str = "validation"
    test_subset: str = "test"


@dataclass
class TalModelConfig:
    """Projection -> local-window transformer pyramid -> identity neck -> shared heads."""

    embd_dim: int = 512
    embd_kernel_size: int = 3
    embd_layers: int = 2  # Conv1d -> LayerNorm -> ReLU, repeated
    stem_layers: int = 2  # transformer layers at full resolution
    branch_layers: int = 5  # each halves the length: a pyramid of branch_layers + 1 levels
    n_head: int = 4
    window_size: int | list[int] = 19  # local attention window; <= 1 means global; a list gives one per level
    mlp_ratio: int = 4
    dropout: float = 0.0  # on the attention and MLP outputs; ActionFormer's default, unset in its THUMOS14 config
    drop_path: float = 0.1  # stochastic depth of each residual branch
    # Learnable per-channel scale on each residual branch (attention and MLP): x + drop_path(scale * branch(x)),
    # initialised to this value (ActionFormer's AffineDropPath). As in ActionFormer the scale exists only when
    # drop_path > 0; <= 0 turns it off (branches added unscaled).
    layer_scale_init: float = 1e-4
    use_abs_pe: bool = False  # sinusoidal position encoding added after the projection
    head_dim: int = 512
    head_kernel_size: int = 3
    head_layers: int = 3  # convs per head, the last one predicts
    regression_range: list[list[float]] = field(
        default_factory=lambda: [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]]
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

    epochs: int = 30  # cosine epochs after the warm-up (total = warmup_epochs + epochs)
    warmup_epochs: int = 5
    batch_size: int = 2
    lr: float = 1e-4
    weight_decay: float = 0.05
    clip_grad_norm: float = 1.0  # <= 0 disables clipping
    ema_decay: float = 0.999  # model EMA used for evaluation; 0 disables it
    center_sample_radius: float = 1.5  # in strides of the point's level
    cls_prior_prob: float = 0.01
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    loss_weight: float = 1.0  # weight of the DIoU regression loss
    init_loss_norm: float = 100.0  # initial value of the EMA of the positive count
    loss_norm_momentum: float = 0.9
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_workers: int = -1  # batch-loading processes; -1: 0 on the CPU, 4 on CUDA (pinned memory)


@dataclass
class TalTestConfig:
    """Decoding, per-class Gaussian Soft-NMS, score voting, evaluation thresholds."""

    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000  # candidates per pyramid level
    duration_thresh: float = 0.05  # drop decoded segments shorter than this (snippets)
    nms_method: str = "soft"  # soft | hard | none
    nms_sigma: float = 0.5  # Gaussian Soft-NMS: score *= exp(-iou^2 / sigma)
    iou_threshold: float = 0.1  # only for nms_method: hard
    multiclass_nms: bool = True  # per-class NMS; false: class-agnostic
    voting_thresh: float = 0.7  # score voting on boundaries; 0 disables it
    max_seg_num: int = 200  # segments kept per video
    min_score: float = 0.001
    tiou_thresholds: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])
    video_scores: str = ""  # ActivityNet protocol: JSON {video_id: {label: score}} fused with proposals
    video_score_topk: int = 2  # classes per proposal taken from video_scores


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


def _leaves(value: Any) -> list:
    """The scalars inside a config value (lists of lists flattened)."""
    return [leaf for item in value for leaf in _leaves(item)] if isinstance(value, list) else [value]


def load_tal_config(path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> TalConfig:
    """`TalConfig.load`: a YAML config (or a shipped one by name) over the THUMOS14 defaults,
    `{"train.epochs": 3}` overrides, validated; raises `ConfigError` naming the file or key."""
    return TalConfig.load(path, overrides)


def save_tal_config(config: TalConfig, path: str | os.PathLike) -> None:
    """`config.save(path)`: the config as YAML, atomically."""
    config.save(path)
