"""Guardrails of the fit: feature-health figures and the checks that stop a fit gone wrong.

A fit can satisfy Similarity Matching trivially: when the projector's output stops depending on
its input, the predicted map is one constant and the loss sits at the BCE of a constant map,
`constant_map_loss` (0.3854 for the reference target). On real I3D features a too-large lr also
lets the residual dwarf the features (departure >> 1), and the adapted snippets of a video become
one direction (mean cosine -> 1, effective rank -> 1). These figures are measured every epoch on
one fixed batch of windows, against the original features of the same windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sola.core.config import FitConfig
from sola.core.errors import SolaError
from sola.data.stores.checks import SQUARE_LIMIT, huge_values_hint

FROZEN_TOLERANCE = 1e-5  # relative change of the epoch loss counted as "no change"


class FitDiverged(SolaError):
    """The fit diverged or collapsed; the message names the figure and the fix."""


def constant_map_loss(target: torch.Tensor, eps: float = 1e-5) -> float:
    """BCE of the best constant predicted map against `target` `(N, N)`: the loss of a collapsed fit."""
    target = target.double()
    constant = target.mean().clamp(eps, 1 - eps)
    return float(-(target * constant.log() + (1 - target) * (1 - constant).log()).mean())


def spread_figures(features: torch.Tensor) -> dict[str, float]:
    """Mean off-diagonal cosine and effective rank of snippets `(N, C)` (L2-normalised first).

    Effective rank: exp of the entropy of the normalised singular values (Roy & Vetterli, 2007),
    from the eigenvalues of the `(N, N)` Gram matrix; 1 for snippets that all point one way.
    """
    z = F.normalize(features.double().reshape(-1, features.shape[-1]), dim=1)  # (N, C)
    n = len(z)
    cosine = ((z.sum(0).square().sum() - n) / max(n * (n - 1), 1)).item()
    singular = torch.linalg.eigvalsh(z @ z.T).clamp_min(0).sqrt()  # (N,)
    share = singular / singular.sum().clamp_min(1e-30)
    rank = math.exp(-(share * share.clamp_min(1e-30).log()).sum().item())
    return {"cosine": cosine, "rank": rank}


def health_windows(lengths: np.ndarray, window: int, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed health batch: `count` (video index, start) pairs drawn once from `seed`."""
    rng = np.random.default_rng([seed, 4099])  # its own stream: the training windows stay as they were
    videos = rng.choice(len(lengths), size=count, replace=len(lengths) < count)
    starts = rng.integers(0, lengths[videos] - window + 1)
    return videos, starts


@torch.no_grad()
def feature_health(adapter: torch.nn.Module, windows: torch.Tensor, original: dict[str, float]) -> dict[str, float]:
    """Health of the adapted features of `windows` `(B, L, C)`: cosine, rank, departure, finiteness.

    `original`: `spread_figures` of the windows themselves. Ratios compare the angular spread
    (1 - mean cosine) and the effective rank with the original's.
    """
    was_training = adapter.training
    adapter.eval()
    adapted = adapter(windows)  # (B, L, C)
    adapter.train(was_training)
    finite = bool(torch.isfinite(adapted).all()) and all(bool(torch.isfinite(p).all()) for p in adapter.parameters())
    if not finite:
        return {"finite": False}
    figures = spread_figures(adapted)
    change = (adapted - windows).norm(dim=-1) / windows.norm(dim=-1).clamp_min(1e-12)
    return {
        "finite": True,
        "cosine": figures["cosine"],
        "rank": figures["rank"],
        "cosine_original": original["cosine"],
        "rank_original": original["rank"],
        "spread_ratio": (1 - figures["cosine"]) / max(1 - original["cosine"], 1e-12),
        "rank_ratio": figures["rank"] / max(original["rank"], 1e-12),
        "departure": change.mean().item(),
    }


@dataclass
class FitGuard:
    """Tracks the epochs of one fit and says why it must stop (None while healthy)."""

    fit: FitConfig
    constant_loss: float
    unchanged: int = 0  # epochs in a row whose loss did not change
    last_loss: float | None = None

    def at_constant_map(self, loss: float) -> bool:
        """Whether `loss` sits at the constant-map loss (within 0.5%): the objective learns nothing.

        Not a reason to stop: the adapter then stays near where it is (the identity when it never left).
        """
        return _relative(loss, self.constant_loss) < 5e-3

    def check(self, loss: float, health: dict[str, float]) -> str | None:
        """The reason to stop after an epoch with mean `loss` and `feature_health` figures, or None."""
        fit = self.fit
        fix = f"lower fit.lr (now {fit.lr:g}; try {fit.lr / 10:g}) or shorten the schedule"
        if not math.isfinite(loss) or not health.get("finite", False):
            return f"the loss or the adapter's weights are not finite (NaN/Inf): the fit diverged; {fix}"
        if health["departure"] > fit.max_departure:
            return (f"departure {health['departure']:.3g} > fit.max_departure {fit.max_departure:g}: the residual "
                    f"is {health['departure']:.3g} times the features, which it replaces; {fix}")
        if fit.collapse_ratio > 0:
            for name, label in (("rank_ratio", "effective rank"), ("spread_ratio", "angular spread (1 - mean cosine)")):
                if health[name] < fit.collapse_ratio:
                    return (f"collapse: the adapted features' {label} is {health[name]:.3g} x the original's "
                            f"(< fit.collapse_ratio {fit.collapse_ratio:g}); {fix}")
        if fit.frozen_epochs:
            unchanged = self.last_loss is not None and _relative(loss, self.last_loss) < FROZEN_TOLERANCE
            self.unchanged = self.unchanged + 1 if unchanged else 0
            self.last_loss = loss
            if self.unchanged >= fit.frozen_epochs:
                return (f"the loss is frozen at {loss:.6f} for {self.unchanged + 1} epochs: the adapted features "
                        f"no longer depend on the input; {fix}")
        return None


def nonfinite_figures(record: dict, prefix: str = "") -> list[str]:
    """Names of the non-finite numbers of an epoch's metrics record (`departure`, `health.rank`, ...)."""
    found = []
    for name, value in record.items():
        if isinstance(value, dict):
            found += nonfinite_figures(value, f"{prefix}{name}.")
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(f"{prefix}{name}")
    return found


def nonfinite_reason(figures: list[str], weights_finite: bool, videos: list[str], largest: float, fix: str) -> str:
    """Why a fit stops on non-finite figures: `figures` (their names; empty when only the adapted health
    windows are non-finite), whether the adapter's weights are finite, the videos whose windows gave them,
    the largest magnitude in those videos' features and the fix for a diverged fit."""
    what = ", ".join(figures) if figures else "the adapted features of the health windows"
    verb = "is" if len(figures) == 1 else "are"
    if not weights_finite:
        return f"{what} {verb} not finite (NaN/Inf) and so are the adapter's weights: the fit diverged; {fix}"
    named = (f" on the windows of video{'s' if len(videos) > 1 else ''} {', '.join(videos[:5])}"
             f"{', ...' if len(videos) > 5 else ''}") if videos else ""
    if largest > SQUARE_LIMIT:
        return f"{what} {verb} not finite (NaN/Inf){named}: their features hold {huge_values_hint(largest)}"
    return f"{what} {verb} not finite (NaN/Inf){named} though the adapter's weights are finite; {fix}"


def _relative(value: float, reference: float) -> float:
    return abs(value - reference) / max(abs(reference), 1e-12)
