"""A directory with one `.npy` of shape (T, C) per video (ActionFormer, TriDet, HACS, SoLa's own)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from sola.atomic import atomic_path, remove_stale_temporaries
from sola.errors import StoreError
from sola.stores.base import FeatureStore, StoreWriter, check_features, register_layout


@register_layout("npy")
class NpyStore(FeatureStore):
    """`DIR/{prefix}{video_id}{suffix}.npy`; memory-mapped for training windows."""

    def __init__(self, path: str | os.PathLike, prefix: str = "", suffix: str = "") -> None:
        super().__init__(path)
        if not self.path.is_dir():
            raise StoreError(f"feature directory {self.path} does not exist")
        self.prefix, self.suffix = prefix, suffix
        self._ids: list[str] | None = None

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and any(p.suffix == ".npy" for p in path.iterdir())

    def file(self, video_id: str) -> Path:
        """Path of one video's file."""
        return self.path / f"{self.prefix}{video_id}{self.suffix}.npy"

    def video_ids(self) -> list[str]:
        if self._ids is None:
            ids = []
            for entry in self.path.iterdir():
                stem = entry.name[: -len(".npy")] if entry.name.endswith(".npy") else None
                if stem is None or stem.startswith(".") or not entry.is_file():
                    continue
                if not stem.startswith(self.prefix) or not stem.endswith(self.suffix):
                    continue
                ids.append(stem[len(self.prefix) : len(stem) - len(self.suffix)])
            self._ids = sorted(ids)
        return self._ids

    def _load(self, video_id: str, mmap: bool) -> np.ndarray:
        file = self.file(video_id)
        if not file.is_file():
            raise StoreError(f"{file}: no such feature file (video {video_id!r})")
        try:
            array = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except ValueError as exc:
            raise StoreError(
                f"{file}: not a readable .npy array ({exc}); the file is truncated, corrupt or "
                "holds pickled objects: re-extract or re-download it"
            ) from None
        except OSError as exc:
            raise StoreError(f"{file}: cannot read ({exc})") from None
        return check_features(array, str(file))

    def read(self, video_id: str) -> np.ndarray:
        return self._load(video_id, mmap=False)

    def window_source(self, video_id: str) -> np.ndarray:
        return self._load(video_id, mmap=True)

    def shape(self, video_id: str) -> tuple[int, int]:
        return tuple(self._load(video_id, mmap=True).shape)  # type: ignore[return-value]

    def options(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "suffix": self.suffix}

    def writer(self, out: str | os.PathLike) -> "NpyWriter":
        return NpyWriter(Path(out), self.prefix, self.suffix)


class NpyWriter(StoreWriter):
    """Writes `OUT/{prefix}{id}{suffix}.npy` atomically (temporary file + rename)."""

    def __init__(self, path: Path, prefix: str = "", suffix: str = "") -> None:
        self.path, self.prefix, self.suffix = Path(path), prefix, suffix
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"output {self.path} exists and is not a directory; choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Remove `.NAME.*.tmp` leftovers of killed runs (at the end, when no rank is writing)."""
        remove_stale_temporaries(self.path)

    def _file(self, video_id: str) -> Path:
        return self.path / f"{self.prefix}{video_id}{self.suffix}.npy"

    def has(self, video_id: str) -> bool:
        return self._file(video_id).is_file()

    def write(self, video_id: str, features: np.ndarray) -> None:
        with atomic_path(self._file(video_id)) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(features), allow_pickle=False)
