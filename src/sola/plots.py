"""Pictures: temporal self-similarity maps (TSM) before and after SoLa."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sola.atomic import atomic_path


def cosine_similarity_map(features: np.ndarray) -> np.ndarray:
    """Cosine self-similarity `(T, T)` of one video's features `(T, C)`."""
    x = np.asarray(features, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x @ x.T


def tsm_figure(
    maps: dict[str, np.ndarray],
    out: str | os.PathLike,
    segments: Sequence[tuple[float, float]] = (),
    target: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG of TSMs side by side on one colour scale with one colour bar.

    `maps`: panel title -> `(T, T)` cosine map. `segments`: ground truth `(start, end)` in snippets,
    drawn as bars along both axes of each panel. `target`: the Similarity Matching target `(N, N)`
    (values in [0, 1]) drawn as a small inset in cosine units (2T - 1).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    names = list(maps)
    low = min(float(m.min()) for m in maps.values())
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names) + 1.2, 4.9), squeeze=False)
    image = None
    for ax, name in zip(axes[0], names):
        tsm = maps[name]
        length = tsm.shape[0]
        image = ax.imshow(tsm, cmap="viridis", vmin=low, vmax=1.0, extent=(0, length, length, 0))
        ax.set_title(name)
        ax.set_xlabel("snippet")
        ax.set_ylabel("snippet")
        strip = 0.035 * length
        for start, end in segments:
            for xy, w, h in (((start, -strip), end - start, strip), ((-strip, start), strip, end - start)):
                ax.add_patch(Rectangle(xy, w, h, color="tab:red", clip_on=False, linewidth=0))
        ax.set_xlim(-strip, length)
        ax.set_ylim(length, -strip)
    fig.colorbar(image, ax=axes[0].tolist(), label="cosine similarity", shrink=0.85)
    if target is not None:
        inset = fig.add_axes((0.005, 0.78, 0.13, 0.17))
        inset.imshow(2.0 * np.asarray(target) - 1.0, cmap="viridis", vmin=low, vmax=1.0)
        inset.set_title("target", fontsize=8)
        inset.set_xticks([])
        inset.set_yticks([])
    if title:
        fig.suptitle(title)
    if segments:
        fig.text(0.99, 0.01, "red bars: ground-truth actions", ha="right", fontsize=8, color="tab:red")
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
