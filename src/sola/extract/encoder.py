"""The frozen snippet encoder: pretrained I3D on a device, uint8 clips in, features and logits out."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from importlib import resources

import numpy as np
import torch

from sola.core.devices import resolve_device
from sola.core.errors import ExtractError
from sola.extract.i3d import InceptionI3d, fuse_batch_norm
from sola.extract.weights import load_state_dict


@lru_cache(maxsize=1)
def kinetics400_labels() -> tuple[str, ...]:
    """The 400 Kinetics class names shipped with the package; index i is I3D output i."""
    text = resources.files("sola").joinpath("extract/kinetics400_labels.json").read_text()
    labels = tuple(json.loads(text)["labels"])
    if len(labels) != 400:
        raise ExtractError(f"the packaged Kinetics-400 label list has {len(labels)} names, not 400; reinstall sola")
    return labels


def load_i3d(device: str | torch.device = "cpu", cache: str | os.PathLike | None = None) -> InceptionI3d:
    """The pretrained Kinetics-400 RGB I3D, batch norm fused, in eval mode on `device`.

    Downloads and converts the weights on first use (see `sola.extract.weights`); raises
    `ExtractError` if that fails.
    """
    with torch.device("meta"):  # no random init: every tensor comes from the checkpoint
        model = InceptionI3d()
    model.load_state_dict(load_state_dict(cache), strict=True, assign=True)
    model = fuse_batch_norm(model.eval())
    model.requires_grad_(False)
    # NDHWC is the layout frames arrive in and the fastest one for oneDNN / cuDNN 3-D convs.
    return model.to(device=torch.device(device), memory_format=torch.channels_last_3d)


class SnippetEncoder:
    """Encode batches of uint8 clips `(B, T, H, W, 3)` into I3D features `(B, 1024)` and logits `(B, 400)`."""

    def __init__(self, device: str = "auto", cache: str | os.PathLike | None = None) -> None:
        self.device = resolve_device(device)
        self.model = load_i3d(self.device, cache)

    @torch.inference_mode()
    def encode(self, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(B, T, H, W, 3)` uint8 RGB -> `(B, 1024)` features and `(B, 400)` logits, float32.

        Pixels are scaled to [-1, 1] on the device (the DeepMind I3D input range).
        """
        if clips.ndim != 5 or clips.shape[-1] != 3 or clips.dtype != np.uint8:
            raise ExtractError(f"clips must be uint8 (B, T, H, W, 3), got {clips.dtype} {clips.shape}")
        batch = torch.from_numpy(clips).to(self.device, non_blocking=True)
        batch = batch.permute(0, 4, 1, 2, 3).float()  # (B, 3, T, H, W), channels-last in memory
        batch = batch.mul_(2.0 / 255.0).sub_(1.0)
        features, logits = self.model(batch)
        return features.float().cpu().numpy(), logits.float().cpu().numpy()
