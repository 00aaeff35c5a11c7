"""A directory with one `.npy` of shape (T, C) per video (ActionFormer, TriDet, HACS, SoLa's own)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sola.errors import StoreError
from sola.stores.base import DirectoryStore, DirectoryWriter, check_features, register_layout


@register_layout("npy")
class NpyStore(DirectoryStore):
    """`DIR/{prefix}{video_id}{suffix}.npy`; memory-mapped for training windows."""

    random_access = True

    extensions = (".npy",)

    def load_file(self, file: Path, mmap: bool = False) -> np.ndarray:
        try:
            return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except ValueError as exc:
            raise StoreError(
                f"{file}: not a readable .npy array ({exc}); the file is truncated, corrupt or "
                "holds pickled objects: re-extract or re-download it"
            ) from None
        except OSError as exc:
            raise StoreError(f"{file}: cannot read ({exc})") from None

    def window_source(self, video_id: str) -> np.ndarray:
        file = self.file(video_id)
        return check_features(self.load_file(file, mmap=True), str(file))

    def shape(self, video_id: str) -> tuple[int, int]:
        return tuple(self.window_source(video_id).shape)  # type: ignore[return-value]

    def writer(self, out: str | os.PathLike) -> "NpyWriter":
        return NpyWriter(Path(out), self.prefix, self.suffix)


class NpyWriter(DirectoryWriter):
    """Writes `OUT/{prefix}{id}{suffix}.npy` atomically (temporary file + rename)."""

    extension = ".npy"

    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        np.save(handle, np.ascontiguousarray(features), allow_pickle=False)
