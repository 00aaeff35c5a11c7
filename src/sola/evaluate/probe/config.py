"""The linear probe's settings (`ProbeConfig`: sections data, sgd, lbfgs, select) and the metric names.

Apart from the probes (`sola.evaluate.probe.protocols`) so that the command line can name them without
importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sola.core.config import SectionedConfig
from sola.core.errors import ConfigError

METRICS = ("accuracy", "balanced_accuracy", "average_precision", "boundary_accuracy")
CRITERIA = ("probe", "head")  # what `select.criterion` may name
SELECTABLE = tuple(f"{p}_{m}" for p in ("sgd", "lbfgs") for m in METRICS)  # the columns `select.metric` may name


def validate_probe_config(config: ProbeConfig) -> None:
    """Raise `ConfigError` naming the key for a value out of range (the checker of `ProbeConfig`)."""
    d, sgd, lbfgs, select = config.data, config.sgd, config.lbfgs, config.select
    integers = {"data.boundary_k": (d.boundary_k, 1), "data.seed": (d.seed, 0), "sgd.epochs": (sgd.epochs, 1),
                "sgd.batch_size": (sgd.batch_size, 1), "sgd.report_from": (sgd.report_from, 0),
                "lbfgs.max_iter": (lbfgs.max_iter, 1), "lbfgs.history_size": (lbfgs.history_size, 1),
                "data.chunk": (d.chunk, 1), "data.max_snippets": (d.max_snippets, 0),
                "data.max_bytes": (d.max_bytes, 0)}
    for name, (value, least) in integers.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")
    if not 0 < d.videos <= 1:  # also refuses NaN
        raise ConfigError(f"data.videos is the share of each split's videos probed, in (0, 1], got {d.videos}")
    for name, value, low, above in (("data.feat_stride", d.feat_stride, 0.0, True), ("data.fps", d.fps, 0.0, True),
                                    ("data.num_frames", d.num_frames, 0.0, False)):
        if value is not None and not (math.isfinite(value) and (value > low if above else value >= low)):
            raise ConfigError(f"{name} must be a finite number {'>' if above else '>='} {low:g} "
                              f"(null: from the annotations), got {value}")
    if not 0 < d.holdout < 1:  # also refuses NaN
        raise ConfigError(f"data.holdout must lie strictly between 0 and 1, got {d.holdout}")
    if not (math.isfinite(sgd.lr) and sgd.lr > 0):
        raise ConfigError(f"sgd.lr must be a finite number > 0, got {sgd.lr}")
    if not 0 <= sgd.momentum < 1:
        raise ConfigError(f"sgd.momentum must be in [0, 1), got {sgd.momentum}")
    for name, value in (("lbfgs.l2", lbfgs.l2), ("lbfgs.tolerance_grad", lbfgs.tolerance_grad),
                        ("lbfgs.tolerance_change", lbfgs.tolerance_change), ("select.min_gain", select.min_gain)):
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value}")
    if select.criterion not in CRITERIA:
        raise ConfigError(f"select.criterion must be one of {', '.join(CRITERIA)}, got {select.criterion!r}")
    for name, value, least in (("select.head_epochs", select.head_epochs, 0), ("select.seeds", select.seeds, 2)):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}"
                              + ("; a 95% interval needs two paired seeds" if name == "select.seeds" else ""))
    if not (math.isfinite(select.head_margin) and select.head_margin >= 0):
        raise ConfigError(f"select.head_margin must be a finite number >= 0 (avg mAP, 0-1), got {select.head_margin}")
    if select.metric not in SELECTABLE:
        raise ConfigError(f"select.metric: unknown probe metric {select.metric!r}; "
                          f"choose one of {', '.join(SELECTABLE)}")


@dataclass
class ProbeDataConfig:
    """Which snippets the probes see, how they are labelled, and the held-out split of selection."""

    boundary_k: int = 2  # boundary accuracy counts the snippets within +-k of a transition
    feat_stride: float | None = None  # frames between snippets; None: from the annotations
    num_frames: float | None = None  # frames seen by one snippet; None: from the annotations
    fps: float | None = None  # None: from the annotations
    holdout: float = 0.25  # share of a subset's videos held out by `collect_heldout_snippets`
    seed: int = 0  # the held-out split, the subsamples, and both probes' initialisation and batch order
    videos: float = 1.0  # share of each split's videos probed (seeded; the reference: about 0.1)
    chunk: int = 1  # one random snippet per chunk of this many (1: every snippet; the reference: 100)
    max_snippets: int = 400_000  # per split (0: no cap); beyond it a seeded uniform draw: memory ~ N x C x 4 B
    max_bytes: int = 750_000_000  # per split, of its float32 matrix (0: no cap): both ~1.5 GB whatever C


@dataclass
class SgdProbeConfig:
    """The reference protocol: Linear(C -> 2) trained with mini-batch SGD with momentum."""

    epochs: int = 16
    lr: float = 0.01
    momentum: float = 0.9
    batch_size: int = 256
    report_from: int = 6  # metrics are averaged over epochs >= this (0-based; the last ten of 16)


@dataclass
class LbfgsProbeConfig:
    """The converging probe: class-balanced logistic regression, full batch, L-BFGS from zero."""

    l2: float = 1e-4  # loss + l2/2 * |w|^2 (bias free)
    max_iter: int = 500
    history_size: int = 20
    tolerance_grad: float = 1e-6
    tolerance_change: float = 1e-10


@dataclass
class ProbeSelectConfig:
    """Checkpoint selection (`sola.evaluate.select`): the column that decides and the margin to clear."""

    metric: str = "lbfgs_balanced_accuracy"  # the converging probe: sgd_* can sit at the majority rate
    min_gain: float = 0.0  # a checkpoint must beat the identity by more than this
    # Beyond the reference (`sola.evaluate.select_head`): judge candidates by a short proxy head instead.
    criterion: str = "probe"  # "probe" (the reference's rule) or "head" (the proxy head's held-out avg mAP)
    head_epochs: int = 6  # the proxy head's epochs in all, warm-up included (0: the head config's schedule)
    seeds: int = 3  # proxy-head seeds, each candidate paired with the identity on the same seed
    head_margin: float = 0.0  # the 95% interval of the paired avg-mAP gain (0-1) must lie above this


class ProbeConfig(SectionedConfig, check=validate_probe_config):
    """Everything the linear probe and checkpoint selection use: data, sgd, lbfgs, select."""

    data: ProbeDataConfig
    sgd: SgdProbeConfig
    lbfgs: LbfgsProbeConfig
    select: ProbeSelectConfig


def probe_config(config: ProbeConfig | None = None, seed: int | None = None) -> ProbeConfig:
    """A validated copy of `config` (None: the defaults) with `seed`, when given, as its `data.seed`.

    Raises `ConfigError` naming the key of a value out of range.
    """
    override = {"data": {"seed": seed}} if seed is not None else None
    base = config if config is not None else ProbeConfig()
    return ProbeConfig.from_dict(override, base=base, where="seed").validate()
