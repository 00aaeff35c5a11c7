"""The fit's optimiser-step budget and learning-rate schedule (beyond the reference's constant lr)."""

from __future__ import annotations

import math

from sola.core.config import FitConfig


def steps_per_epoch(videos: int, windows_per_video: int, world_size: int, local_batch: int) -> int:
    """Optimiser steps in one epoch: every video's windows, sharded over ranks, in local batches."""
    per_rank = -(-videos // world_size) * windows_per_video
    return -(-per_rank // local_batch)


def total_steps(fit: FitConfig, per_epoch: int) -> int:
    """The run's optimiser steps: `fit.steps` when set, else `fit.epochs` full epochs."""
    return fit.steps if fit.steps > 0 else fit.epochs * per_epoch


def total_epochs(fit: FitConfig, per_epoch: int) -> int:
    """Epochs needed to take `total_steps` steps (the last one may stop early)."""
    return -(-total_steps(fit, per_epoch) // per_epoch)


def lr_factor(step: int, total: int, warmup: int = 0, schedule: str = "constant") -> float:
    """Multiplier of `fit.lr` at optimiser step `step` (0-based) of `total`.

    Linear warm-up over the first `warmup` steps ((step + 1) / warmup), then 1 (constant) or a
    cosine from 1 to 0 over the remaining steps.
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
