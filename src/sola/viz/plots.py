"""Pictures: temporal self-similarity maps (TSM) before and after SoLa; detection timelines."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from sola.core.atomic import atomic_path


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


def class_colors(names: Sequence[str]) -> dict[str, tuple]:
    """One colour per class name, stable for a given set of names (sorted, then tab20 / hsv)."""
    import matplotlib

    ordered = sorted(set(names))
    cmap = matplotlib.colormaps["tab20" if len(ordered) <= 20 else "hsv"]
    scale = 1 if len(ordered) <= 20 else max(len(ordered), 1)
    return {name: cmap(i / scale if scale > 1 else i % 20) for i, name in enumerate(ordered)}


def detection_lanes(starts: np.ndarray, ends: np.ndarray, max_lanes: int) -> np.ndarray:
    """Lane index per segment (in the given order, best first) so that no two in a lane overlap; -1: no room."""
    lane_end = np.full(max_lanes, -np.inf)
    lanes = np.full(len(starts), -1, dtype=np.int64)
    for i, (start, end) in enumerate(zip(starts, ends)):  # a few dozen segments per picture
        free = np.flatnonzero(lane_end <= start)
        if free.size:
            lanes[i] = free[0]
            lane_end[free[0]] = end
    return lanes


def timeline_figure(
    out: str | os.PathLike,
    duration: float,
    detections: Sequence[tuple[float, float, str, float]],
    ground_truth: Sequence[tuple[float, float, str]] = (),
    title: str | None = None,
    min_score: float = 0.0,
    max_lanes: int = 6,
    colors: dict[str, tuple] | None = None,
) -> Path:
    """Write a PNG timeline of one video: detections above, ground truth beneath, coloured by class.

    `detections`: `(start, end, label, score)` in seconds; those scoring below `min_score` are left
    out, the rest are drawn best first in up to `max_lanes` non-overlapping lanes (opacity follows
    the score, the score is written on the bar). `ground_truth`: `(start, end, label)` in seconds,
    drawn in one lane at the bottom. `colors`: label -> colour (default `class_colors` of all labels).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    kept = sorted((d for d in detections if d[3] >= min_score), key=lambda d: -d[3])
    colors = colors or class_colors([d[2] for d in kept] + [g[2] for g in ground_truth])
    starts = np.array([d[0] for d in kept], dtype=np.float64)
    ends = np.array([d[1] for d in kept], dtype=np.float64)
    lanes = detection_lanes(starts, ends, max_lanes)
    used = int(lanes.max()) + 1 if kept and lanes.max() >= 0 else 1
    rows = used + (1.4 if ground_truth else 0)
    fig, ax = plt.subplots(figsize=(10, 1.0 + 0.42 * rows))
    for (start, end, label, score), lane in zip(kept, lanes):
        if lane < 0:
            continue
        y = (1.4 if ground_truth else 0) + lane
        ax.barh(y, end - start, left=start, height=0.8, color=colors.get(label, "grey"),
                alpha=0.35 + 0.65 * float(np.clip(score, 0, 1)), edgecolor="black", linewidth=0.4)
        ax.text(start + 0.5 * (end - start), y, f"{score:.2f}", ha="center", va="center", fontsize=7, clip_on=True)
    for start, end, label in ground_truth:
        ax.barh(0, end - start, left=start, height=0.8, color=colors.get(label, "grey"), hatch="//",
                edgecolor="black", linewidth=0.6)
    ticks, names = [], []
    if ground_truth:
        ticks.append(0)
        names.append("ground truth")
    if kept:
        ticks.append((1.4 if ground_truth else 0) + (used - 1) / 2)
        names.append("detections")
    ax.set_yticks(ticks, names)
    ax.set_ylim(-0.6, rows - 0.2)
    ax.set_xlim(0, max(float(duration), float(ends.max()) if kept else 0.0, 1e-6))
    ax.set_xlabel("seconds")
    shown = sorted({d[2] for d, lane in zip(kept, lanes) if lane >= 0} | {g[2] for g in ground_truth})
    if shown:
        ax.legend(handles=[Patch(color=colors.get(n, "grey"), label=n) for n in shown], loc="upper left",
                  bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    hidden = len(kept) - int((lanes >= 0).sum())
    note = f"score >= {min_score:g}" + (f"; {hidden} more not drawn" if hidden else "")
    ax.set_title(f"{title}  ({note})" if title else note, fontsize=9)
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
