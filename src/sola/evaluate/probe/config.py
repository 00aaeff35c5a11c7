"""The linear probe's settings (`ProbeConfig`: sections data, sgd, lbfgs, select) and the metric names.

Apart from the probes (`sola.evaluate.probe.protocols`) so that the command line can name them without
importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass

from sola.core.config import COUNT, SEED, SIZE, SectionedConfig, ranged
from sola.core.errors import ConfigError

METRICS = ("accuracy", "balanced_accuracy", "average_precision", "boundary_accuracy")
CRITERIA = ("probe", "head")  # what `select.criterion` may name
SELECTABLE = tuple(f"{p}_{m}" for p in ("sgd", "lbfgs") for m in METRICS)  # the columns `select.metric` may name


def validate_probe_config(config: ProbeConfig) -> None:
    """Raise `ConfigError` naming the key for a value no range says (the checker of `ProbeConfig`; the range
    of each value is checked before, beside its field)."""
    select = config.select
    if select.criterion not in CRITERIA:
        raise ConfigError(f"select.criterion must be one of {', '.join(CRITERIA)}, got {select.criterion!r}")
    if select.metric not in SELECTABLE:
        raise ConfigError(f"select.metric: unknown probe metric {select.metric!r}; "
                          f"choose one of {', '.join(SELECTABLE)}")


@dataclass
class ProbeDataConfig:
    """Which snippets the probes see, how they are labelled, and the held-out split of selection."""

    boundary_k: int = ranged(2, 1, COUNT)  # boundary accuracy counts the snippets within +-k of a transition
    feat_stride: float | None = ranged(None, 0.0, 4096.0, above=True)  # frames between snippets; None: from the annotations
    num_frames: float | None = ranged(None, 0.0, 4096.0)  # frames seen by one snippet; None: from the annotations
    fps: float | None = ranged(None, 0.0, 1000.0, above=True)  # None: from the annotations
    holdout: float = ranged(0.25, 0.0, 1.0, above=True, below=True)  # share of a subset's videos held out by `collect_heldout_snippets`
    seed: int = ranged(0, *SEED)  # the held-out split, the subsamples, and both probes' initialisation and batch order
    videos: float = ranged(1.0, 0.0, 1.0, above=True)  # share of each split's videos probed (seeded; the reference: about 0.1)
    chunk: int = ranged(1, 1, SIZE)  # one random snippet per chunk of this many (1: every snippet; the reference: 100)
    max_snippets: int = ranged(400_000, 0, SIZE)  # per split (0: no cap); beyond it a seeded uniform draw: memory ~ N x C x 4 B
    max_bytes: int = ranged(750_000_000, 0, SIZE)  # per split, of its float32 matrix (0: no cap): both ~1.5 GB whatever C


@dataclass
class SgdProbeConfig:
    """The reference protocol: Linear(C -> 2) trained with mini-batch SGD with momentum."""

    epochs: int = ranged(16, 1, COUNT)
    lr: float = ranged(0.01, 0.0, 1e3, above=True)
    momentum: float = ranged(0.9, 0.0, 1.0, below=True)
    batch_size: int = ranged(256, 1, SIZE)
    report_from: int = ranged(6, 0, COUNT)  # metrics are averaged over epochs >= this (0-based; the last ten of 16)


@dataclass
class LbfgsProbeConfig:
    """The converging probe: class-balanced logistic regression, full batch, L-BFGS from zero."""

    l2: float = ranged(1e-4, 0.0, 1e6)  # loss + l2/2 * |w|^2 (bias free)
    max_iter: int = ranged(500, 1, COUNT)
    history_size: int = ranged(20, 1, 10_000)
    tolerance_grad: float = ranged(1e-6, 0.0, 1e6)
    tolerance_change: float = ranged(1e-10, 0.0, 1e6)


@dataclass
class ProbeSelectConfig:
    """Checkpoint selection (`sola.evaluate.select`): the column that decides and the margin to clear."""

    metric: str = "lbfgs_balanced_accuracy"  # the converging probe: sgd_* can sit at the majority rate
    min_gain: float = ranged(0.0, 0.0, 1e6)  # a checkpoint must beat the identity by more than this
    # Beyond the reference (`sola.evaluate.select_head`): judge candidates by a short proxy head instead.
    criterion: str = "probe"  # "probe" (the reference's rule) or "head" (the proxy head's held-out avg mAP)
    head_epochs: int = ranged(6, 0, COUNT)  # the proxy head's epochs in all, warm-up included (0: the head config's schedule)
    seeds: int = ranged(3, 2, 1000, note="a 95% interval needs two paired seeds")  # proxy-head seeds, each candidate paired with the identity on the same seed
    head_margin: float = ranged(0.0, 0.0, 1.0)  # the 95% interval of the paired avg-mAP gain (0-1) must lie above this


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
