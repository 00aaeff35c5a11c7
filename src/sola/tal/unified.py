"""Unified training (the SoLa paper's ablation): the SoLa adapter in front of the head, trained with
the TAL loss, optionally with Similarity Matching as an auxiliary loss (beyond the paper).

Modes: "baseline" (no adapter), "unified" (adapter + TAL loss only), "unified+sm" (adapter + TAL
loss + weight x Similarity Matching on random windows of each training batch).
"""

from __future__ import annotations

import torch
from torch import nn

from sola.adapt.adapter import SoLaAdapter
from sola.adapt.matching import SimilarityMatching
from sola.core.config import SoLaConfig
from sola.core.errors import ConfigError
from sola.tal.config import TRAINING_MODES


class MatchingAuxiliary(nn.Module):
    """Similarity Matching on `windows_per_video` random windows that lie wholly inside each video.

    forward(feats (B, T, C) raw features, mask (B, T)) -> scalar loss; videos shorter than the
    window contribute none (0 when no video is long enough). The adapter inside `matching` must be
    the one placed in front of the head so that both losses train it.
    """

    def __init__(self, matching: nn.Module, windows_per_video: int = 4) -> None:
        super().__init__()
        self.matching = matching
        self.windows_per_video = windows_per_video
        self.window = matching.config.window

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T, C), (B, T) -> scalar Similarity Matching loss."""
        lengths = mask.sum(1)  # (B,)
        videos = torch.nonzero(lengths >= self.window).squeeze(1)
        if videos.numel() == 0:
            return feats.new_zeros(())
        videos = videos.repeat_interleave(self.windows_per_video)  # (W,)
        room = (lengths[videos] - self.window + 1).float()
        starts = (torch.rand(len(videos), device=feats.device) * room).long()  # (W,)
        index = starts[:, None] + torch.arange(self.window, device=feats.device)[None]  # (W, L)
        windows = feats[videos[:, None], index]  # (W, L, C)
        return self.matching(windows)


def unified_parts(mode: str, dim: int, sola_config=None, windows_per_video: int = 4):
    """(adapter, auxiliary) for a mode: (None, None) for baseline; raises `ConfigError` for an unknown mode.

    The adapter and matching hyper-parameters come from `sola_config` (a `sola.core.config.SoLaConfig`,
    default: the SoLa reference values).
    """
    if mode not in TRAINING_MODES:
        raise ConfigError(f"unknown TAL training mode {mode!r}; expected one of {', '.join(TRAINING_MODES)}")
    if mode == "baseline":
        return None, None
    sola_config = sola_config or SoLaConfig()
    adapter = SoLaAdapter.from_config(dim, sola_config.adapter)
    if mode == "unified":
        return adapter, None
    return adapter, MatchingAuxiliary(SimilarityMatching(adapter, sola_config.matching), windows_per_video)
