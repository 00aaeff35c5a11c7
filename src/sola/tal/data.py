"""Dataset items of the TAL head and what is done to them before a forward pass.

An item is one plain dict (ActionFormer style), independent of file formats:
  feats (T, C): a float tensor, or `LazyFeatures` read only when a batch needs them (bounded memory:
  `StoredFeatures` reads rows of an npy file or slices an HDF5 dataset); segments (M, 2) float tensor
  [start, end] in snippets;
  labels (M,) int64 tensor; video_id str; fps float; feat_stride float (frames between snippets);
  num_frames float (frames seen by one snippet); duration float (seconds).
Snippet t is centred on frame t * feat_stride + num_frames / 2, i.e. on second
(t * feat_stride + num_frames / 2) / fps.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from sola.core.errors import AnnotationError

ITEM_KEYS = ("feats", "segments", "labels", "video_id", "fps", "feat_stride", "num_frames", "duration")


class LazyFeatures:
    """`(T, C)` features of one video that are read only by `load()`; slicing `[a:b]` is lazy too."""

    def __init__(self, shape: tuple[int, int], start: int = 0, stop: int | None = None) -> None:
        self.full_shape = (int(shape[0]), int(shape[1]))
        self.start, self.stop = start, self.full_shape[0] if stop is None else stop

    @property
    def shape(self) -> tuple[int, int]:
        """`(T, C)` of this (possibly sliced) view."""
        return (self.stop - self.start, self.full_shape[1])

    @property
    def ndim(self) -> int:
        """Always 2."""
        return 2

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, index: slice) -> "LazyFeatures":
        start, stop, step = index.indices(len(self))
        if step != 1:
            raise ValueError("LazyFeatures take contiguous slices only")
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.start, view.stop = self.start + start, self.start + max(stop, start)
        return view

    def load(self) -> torch.Tensor:
        """The features of this view as a float32 tensor `(T, C)`."""
        raise NotImplementedError


class StoredFeatures(LazyFeatures):
    """A video of a random-access store (npy rows, HDF5): each `load()` reads only its slice.

    The store's handle is resolved once per process, so a DataLoader worker opens its own.
    """

    def __init__(self, store, video_id: str, shape: tuple[int, int]) -> None:
        super().__init__(shape)
        self.store, self.video_id = store, video_id
        self._source, self._pid = None, None

    def load(self) -> torch.Tensor:
        if self._source is None or self._pid != os.getpid():
            self._source, self._pid = self.store.window_source(self.video_id), os.getpid()
        return torch.from_numpy(np.array(self._source[self.start : self.stop], dtype=np.float32))  # a copy


class ResizedFeatures(LazyFeatures):
    """Another item's features resampled to `length` snippets (see `resize_item`), at `load()`."""

    def __init__(self, base: LazyFeatures, length: int) -> None:
        super().__init__((length, base.shape[1]))
        self.base = base

    def load(self) -> torch.Tensor:
        return _resample(self.base.load(), self.full_shape[0])[self.start : self.stop]


def load_features(feats: torch.Tensor | LazyFeatures) -> torch.Tensor:
    """An item's features as a float32 tensor `(T, C)` (reading lazy features now)."""
    return feats.load() if isinstance(feats, LazyFeatures) else feats.float()


def _resample(feats: torch.Tensor, length: int) -> torch.Tensor:
    """Linear interpolation of `(T, C)` to `(length, C)`."""
    return F.interpolate(feats.T[None], size=length, mode="linear", align_corners=False)[0].T.contiguous()


def seconds_to_snippets(seconds: np.ndarray | torch.Tensor | float, fps: float, feat_stride: float,
                        num_frames: float) -> Any:
    """Times in seconds -> positions on the snippet grid (fractional snippets)."""
    return (seconds * fps - 0.5 * num_frames) / feat_stride


def snippets_to_seconds(snippets: np.ndarray | torch.Tensor | float, fps: float, feat_stride: float,
                        num_frames: float) -> Any:
    """Positions on the snippet grid (fractional snippets) -> times in seconds."""
    return (snippets * feat_stride + 0.5 * num_frames) / fps


def make_item(video_id: str, feats: np.ndarray | torch.Tensor, segments_seconds: np.ndarray | list,
              labels: np.ndarray | list, fps: float, feat_stride: float, num_frames: float,
              duration: float | None = None) -> dict[str, Any]:
    """Build an item from features (T, C) and ground truth in seconds (M, 2); labels (M,) class indices.

    `duration` defaults to the span the snippets cover. Raises `AnnotationError` on a bad fps or stride.
    """
    if fps <= 0 or feat_stride <= 0:
        raise AnnotationError(f"video {video_id}: fps ({fps}) and feat_stride ({feat_stride}) must be positive")
    if not isinstance(feats, LazyFeatures):
        feats = torch.as_tensor(np.asarray(feats, dtype=np.float32))
    seconds = np.asarray(segments_seconds, dtype=np.float64).reshape(-1, 2)
    if duration is None:
        duration = float(snippets_to_seconds(feats.shape[0] - 1, fps, feat_stride, num_frames) + 0.5 * num_frames / fps)
    segments = torch.as_tensor(seconds_to_snippets(seconds, fps, feat_stride, num_frames), dtype=torch.float32)
    return {
        "feats": feats,
        "segments": segments,
        "labels": torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1)),
        "video_id": str(video_id),
        "fps": float(fps),
        "feat_stride": float(feat_stride),
        "num_frames": float(num_frames),
        "duration": float(duration),
    }


def resize_item(item: dict[str, Any], length: int) -> dict[str, Any]:
    """Resample an item's features to `length` snippets covering the same frames (linear interpolation).

    The new grid has `feat_stride = num_frames = covered frames / length`; segments are moved onto it.
    """
    feats = item["feats"]
    if feats.shape[0] == length:
        return item
    covered = (feats.shape[0] - 1) * item["feat_stride"] + item["num_frames"]
    stride = covered / length
    resized = ResizedFeatures(feats, length) if isinstance(feats, LazyFeatures) else _resample(feats, length)
    seconds = snippets_to_seconds(item["segments"].double(), item["fps"], item["feat_stride"], item["num_frames"])
    out = dict(item)
    out.update(feats=resized, feat_stride=stride, num_frames=stride,
               segments=seconds_to_snippets(seconds, item["fps"], stride, stride).float())
    return out


def random_truncate(item: dict[str, Any], max_seq_len: int, trunc_thresh: float,
                    crop_ratio: list[float] | None, rng: np.random.Generator, max_trials: int = 200) -> dict[str, Any]:
    """Random training window: at most `max_seq_len` snippets, also a random crop when `crop_ratio` is set.

    An action cut by the window is kept (clipped) only if at least `trunc_thresh` of it stays inside;
    up to `max_trials` windows are drawn to find one that keeps an action. Returns a new item (T', C).
    """
    length = item["feats"].shape[0]
    window = max_seq_len
    if length <= max_seq_len:
        if crop_ratio is None:
            return item
        low = max(round(crop_ratio[0] * length), 1)
        high = min(round(crop_ratio[1] * length), length)
        window = int(rng.integers(low, high + 1))
        if window == length:
            return item
    segments, labels = item["segments"], item["labels"]
    seg_len = (segments[:, 1] - segments[:, 0]).clamp(min=1e-6)
    for _ in range(max_trials):
        start = int(rng.integers(0, length - window + 1))
        left = segments[:, 0].clamp(min=start)
        right = segments[:, 1].clamp(max=start + window)
        kept = (right - left).clamp(min=0) / seg_len >= trunc_thresh
        if kept.any() or len(labels) == 0:
            break
    out = dict(item)
    out["feats"] = item["feats"][start : start + window]
    out["segments"] = torch.stack([left[kept], right[kept]], dim=1) - start if len(labels) else segments
    out["labels"] = labels[kept] if len(labels) else labels
    return out


def pad_batch(feats: list[torch.Tensor], multiple: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (T_i, C) features into (B, T, C) zero-padded to a multiple of `multiple`, and the (B, T) mask."""
    longest = max(f.shape[0] for f in feats)
    length = -(-longest // multiple) * multiple
    batch = feats[0].new_zeros(len(feats), length, feats[0].shape[1])
    mask = torch.zeros(len(feats), length, dtype=torch.bool)
    for row, f in enumerate(feats):  # one copy per video, not per snippet
        batch[row, : f.shape[0]] = f
        mask[row, : f.shape[0]] = True
    return batch, mask


def check_item(item: dict[str, Any], input_dim: int, num_classes: int) -> None:
    """Raise `AnnotationError` naming the video if an item does not fit the head's config."""
    missing = [key for key in ITEM_KEYS if key not in item]
    if missing:
        raise AnnotationError(f"item {item.get('video_id', '?')}: missing keys {missing}")
    feats = item["feats"]
    if feats.ndim != 2 or feats.shape[1] != input_dim:
        raise AnnotationError(
            f"video {item['video_id']}: features of shape {tuple(feats.shape)} do not match data.input_dim="
            f"{input_dim}; set data.input_dim in the config to the feature dimension"
        )
    labels = item["labels"]
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise AnnotationError(
            f"video {item['video_id']}: label index {int(labels.max())} outside [0, {num_classes}); "
            f"set data.num_classes to the number of classes in the annotations"
        )
