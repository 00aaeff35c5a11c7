"""Similarity Matching: the self-supervised objective that fits the SoLa adapter.

For a window of adapted features, gather N positions, L2-normalise them (z), project them (p),
and push the predicted map P_ij = (1 + cos(stopgrad(z_i), p_j)) / 2 towards the target
T_ij = sigmoid(K / |i - j|^2) (T_ii = 1) with binary cross-entropy. A SimSiam-style stop
gradient on the un-projected side makes P asymmetric.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sola.adapt.adapter import SoLaAdapter
from sola.core.config import MatchingConfig, gathered_positions


def target_map(num_positions: int, k: float = 16.0) -> torch.Tensor:
    """Target TSM `(N, N)`: 1 on the diagonal, sigmoid(k / |i-j|^2) off it (steps between gathered positions)."""
    index = torch.arange(num_positions, dtype=torch.float64)
    distance = (index[:, None] - index[None, :]).abs()
    target = torch.sigmoid(k / distance.clamp(min=1.0) ** 2)
    target.fill_diagonal_(1.0)
    return target.float()


def similarity_map(z: torch.Tensor, p: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Predicted TSM `(B, N, N)`: P_ij = (1 + cos(stopgrad(z_i), p_j)) / 2, clamped to [eps, 1-eps].

    `z`: L2-normalised features `(B, N, C)`; `p`: their projections `(B, N, C)`.
    """
    cosine = torch.einsum("bic,bjc->bij", z.detach(), F.normalize(p, dim=-1))
    return ((1.0 + cosine) / 2.0).clamp(eps, 1.0 - eps)


class Projector(nn.Sequential):
    """Training-only head `Linear(C->H) -> ReLU -> Linear(H->C)`; never saved with the adapter."""

    def __init__(self, dim: int, hidden_dim: int = 512) -> None:
        super().__init__(nn.Linear(dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, dim))


class SimilarityMatching(nn.Module):
    """Adapter + projector; `forward(windows (B, L, C)) -> scalar BCE loss`."""

    def __init__(self, adapter: SoLaAdapter, config: MatchingConfig | None = None) -> None:
        super().__init__()
        self.config = config or MatchingConfig()
        self.adapter = adapter
        self.projector = Projector(adapter.dim, self.config.projector_dim)
        self.departure = torch.zeros(())  # set by forward
        self.departures = torch.zeros((0,))  # (B,) of the last batch, set by forward
        self.register_buffer("positions", torch.tensor(gathered_positions(self.config)), persistent=False)
        self.register_buffer(
            "target", target_map(self.config.num_positions, self.config.target_k), persistent=False
        )

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """Similarity Matching loss of a batch of windows `(B, L, C)`.

        Also records `self.departure`: mean ||tanh(alpha) g(f)|| / ||f|| over the batch, how far the
        adapter moves features from the identity (the gate alone can hide a growing g).
        """
        # Only the gathered positions enter the loss, and none sees padding (validated), so the
        # adapter runs there alone: == self.adapter(windows)[:, positions] at N/L of the cost.
        original = windows[:, self.positions]  # (B, N, C)
        change = torch.tanh(self.adapter.alpha) * self.adapter.residual_at(windows, self.positions)  # (B, N, C)
        with torch.no_grad():  # per window (B,): the fit names the videos of windows whose departure is NaN/Inf
            size = original.norm(dim=-1)  # (B, N); Inf where a snippet's squares overflow float32
            departures = (change.norm(dim=-1) / size.clamp_min(1e-12)).mean(dim=1)
            # x / Inf = 0 would hide such windows while the gate is still 0: their departure is undefined
            self.departures = departures.masked_fill(~torch.isfinite(size).all(dim=1), float("nan"))
            self.departure = self.departures.mean()
        z = F.normalize(original + change, dim=-1)  # (B, N, C)
        p = self.projector(z)  # (B, N, C)
        predicted = similarity_map(z, p, self.config.clamp_eps)  # (B, N, N)
        # After a diverged step the map is NaN, which binary_cross_entropy refuses mid-epoch; the fit's
        # guard sees the NaN weights after the epoch and stops cleanly (finite maps are unchanged).
        predicted = torch.nan_to_num(predicted, nan=0.5)
        return F.binary_cross_entropy(predicted, self.target.expand_as(predicted))
