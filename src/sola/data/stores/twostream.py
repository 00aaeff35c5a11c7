"""Two-stream features: an RGB store and a flow store combined along channels, `(T, C_rgb + C_flow)`.

When the two streams of a video differ in length by a few snippets (decoders round differently),
the shorter one is resampled in time (linear interpolation) to the longer length; channels are
never resampled. Larger gaps are an error: the streams then do not describe the same snippets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sola.core.errors import StoreError
from sola.data.stores.base import FeatureStore, StoreOption, StoreWriter, open_store, register_layout

DEFAULT_MAX_GAP = 4  # snippets
UNPAIRED = ("error", "skip")


def resample_time(features: np.ndarray, length: int) -> np.ndarray:
    """Linearly resample `(T, C)` features to `(length, C)` along time only; end points are kept."""
    current = features.shape[0]
    if current == length:
        return features
    if current == 1:
        return np.repeat(features, length, axis=0)
    position = np.linspace(0.0, current - 1, length)  # (length,) fractional source index
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, current - 1)
    weight = (position - lower)[:, None].astype(np.float64)  # (length, 1)
    mixed = features[lower] * (1.0 - weight) + features[upper] * weight  # (length, C)
    return mixed.astype(features.dtype, copy=False)


@register_layout("twostream")
class TwoStreamStore(FeatureStore):
    """`DIR/rgb` + `DIR/flow` (each any layout), or any two stores given as `rgb=` / `flow=`.

    Options other than the declared ones (prefix, key, ...) go to `open_store` of each stream.
    """

    declared_options = (
        StoreOption("rgb", str, "the RGB store (a path or an open FeatureStore; default DIR/rgb)", cli=False),
        StoreOption("flow", str, "the flow store (a path or an open FeatureStore; default DIR/flow)", cli=False),
        StoreOption("max_gap", int, f"most snippets the stream lengths may differ by (default {DEFAULT_MAX_GAP})",
                    cli=False),
        StoreOption("unpaired", str, "videos in one stream only: 'error' or 'skip' them", cli=False),
    )
    forwards_options = True

    def __init__(
        self,
        path: str | os.PathLike | None = None,
        rgb: FeatureStore | str | os.PathLike | None = None,
        flow: FeatureStore | str | os.PathLike | None = None,
        max_gap: int = DEFAULT_MAX_GAP,
        unpaired: str = "error",
        **options: Any,
    ) -> None:
        if path is not None:
            super().__init__(path)
            rgb = rgb if rgb is not None else self.path / "rgb"
            flow = flow if flow is not None else self.path / "flow"
        elif rgb is None or flow is None:
            raise StoreError("a two-stream store needs a directory with rgb/ and flow/, or both rgb= and flow=")
        self.rgb = rgb if isinstance(rgb, FeatureStore) else open_store(rgb, **options)
        self.flow = flow if isinstance(flow, FeatureStore) else open_store(flow, **options)
        if path is None:
            super().__init__(self.rgb.path)
        if unpaired not in UNPAIRED:
            raise StoreError(f"unpaired must be 'error' or 'skip', got {unpaired!r}")
        self.max_gap, self.unpaired = max_gap, unpaired
        self._ids: list[str] | None = None
        self.rgb_only: list[str] = []
        self.flow_only: list[str] = []

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and (path / "rgb").is_dir() and (path / "flow").is_dir()

    def video_ids(self) -> list[str]:
        if self._ids is None:
            rgb, flow = set(self.rgb.video_ids()), set(self.flow.video_ids())
            self.rgb_only, self.flow_only = sorted(rgb - flow), sorted(flow - rgb)
            if (self.rgb_only or self.flow_only) and self.unpaired == "error":
                raise StoreError(
                    f"{self.rgb.path} and {self.flow.path} hold different videos: {len(self.rgb_only)} only in "
                    f"RGB {self.rgb_only[:5]}, {len(self.flow_only)} only in flow {self.flow_only[:5]}; "
                    "add the missing ones to the other stream, or remove them (Python: TwoStreamStore(..., "
                    "unpaired='skip') leaves them out)"
                )
            self._ids = sorted(rgb & flow)
        return self._ids

    def _paired_length(self, video_id: str, rgb_length: int, flow_length: int) -> int:
        if abs(rgb_length - flow_length) > self.max_gap:
            raise StoreError(
                f"video {video_id!r}: RGB has {rgb_length} snippets but flow {flow_length} "
                f"({self.rgb.path}, {self.flow.path}); more than {self.max_gap} apart, so they do not "
                "describe the same snippets: re-extract one stream (Python: TwoStreamStore(..., max_gap=N) "
                "tolerates larger gaps)"
            )
        return max(rgb_length, flow_length)

    def read(self, video_id: str) -> np.ndarray:
        rgb, flow = self.rgb.read(video_id), self.flow.read(video_id)
        length = self._paired_length(video_id, rgb.shape[0], flow.shape[0])
        dtype = np.result_type(rgb.dtype, flow.dtype)
        streams = [resample_time(rgb, length), resample_time(flow, length)]
        return np.concatenate([s.astype(dtype, copy=False) for s in streams], axis=1)  # (T, C_rgb + C_flow)

    def shape(self, video_id: str) -> tuple[int, int]:
        (rgb_length, rgb_dim), (flow_length, flow_dim) = self.rgb.shape(video_id), self.flow.shape(video_id)
        return self._paired_length(video_id, rgb_length, flow_length), rgb_dim + flow_dim

    def options(self) -> dict[str, Any]:
        return {"max_gap": self.max_gap, "rgb": str(self.rgb.path), "flow": str(self.flow.path)}

    def writer(self, out: str | os.PathLike) -> StoreWriter:
        """The combined features are written as one store in the RGB store's layout."""
        return self.rgb.writer(out)

    def open_output(self, out: str | os.PathLike) -> FeatureStore:
        """The combined store `writer(out)` wrote: one store of the RGB layout (not two streams)."""
        return self.rgb.open_output(out)

    def close(self) -> None:
        """Close both streams."""
        self.rgb.close()
        self.flow.close()
