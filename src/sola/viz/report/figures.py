"""The report's own pictures (curves, bars), drawn with matplotlib and written atomically as PNG.

TSM pictures and detection timelines come from `sola.evaluate.tsm` / `sola.viz.plots`; the error breakdown
from `sola.viz.show.error_figure`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from sola.core.atomic import atomic_path

DPI = 100


@dataclass
class Panel:
    """One plot of a row of line plots: `series` label -> y per x; `lines` label -> a constant drawn dashed."""

    title: str
    series: dict[str, Sequence[float]]
    ylabel: str = ""
    lines: dict[str, float] = field(default_factory=dict)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | os.PathLike) -> Path:
    plt = _pyplot()
    out = Path(out)
    with atomic_path(out) as tmp:
        # no Software/date chunks: the same data gives the same bytes
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return out


def line_panels(out: str | os.PathLike, x: Sequence[float], panels: list[Panel], xlabel: str = "epoch",
                title: str | None = None) -> Path:
    """Write a row of line plots sharing the x values `x` (one marker per point; NaN: a gap) to `out`."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for label, ys in panel.series.items():
            ax.plot(x, np.asarray(ys, dtype=np.float64), marker="o", markersize=3, linewidth=1.4, label=label)
        for label, y in panel.lines.items():
            if y is not None and math.isfinite(y):
                ax.axhline(y, linestyle="--", linewidth=1.0, color="grey", label=label)
        ax.set_title(panel.title, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.ticklabel_format(axis="y", useOffset=False)  # values, not "1e-7 + 4.18e-2" offsets
        if panel.ylabel:
            ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if len(panel.series) + len(panel.lines) > 1:
            ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, out)


def difference_bars(out: str | os.PathLike, names: Sequence[str], differences: dict[str, Sequence[float]],
                    xlabel: str, title: str | None = None) -> Path:
    """Write horizontal bars per name, one bar per series of `differences` (label -> value per name), to `out`.

    Names are drawn in the order given (top to bottom); positive bars green, negative red for a
    single series, one colour per series otherwise.
    """
    plt = _pyplot()
    count, width = len(names), 0.8 / max(len(differences), 1)
    fig, ax = plt.subplots(figsize=(7.5, 1.2 + 0.28 * count * max(1, len(differences) * 0.6)))
    rows = np.arange(count)[::-1]
    for k, (label, values) in enumerate(differences.items()):
        values = np.asarray(values, dtype=np.float64)
        offset = (k - (len(differences) - 1) / 2) * width
        color = np.where(values >= 0, "tab:green", "tab:red") if len(differences) == 1 else None
        ax.barh(rows - offset, values, height=width, color=color, label=label)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(rows, list(names), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    if len(differences) > 1:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, out)
