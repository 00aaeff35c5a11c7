"""The `FeatureStore` interface: where per-video snippet features live, in any layout.

A store maps video ids to `(T, C)` arrays. Every layout (a directory of `.npy`, `.csv`, pickles,
one HDF5 file, ...) implements the same small interface, registers itself with
`register_layout`, and gives a writer of its own layout so that `transform` is format-preserving.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from sola.errors import EmptyVideoError, StoreError

LAYOUTS: dict[str, type["FeatureStore"]] = {}


def register_layout(name: str) -> Callable[[type["FeatureStore"]], type["FeatureStore"]]:
    """Class decorator: make a `FeatureStore` subclass available to `open_store` as `name`."""

    def decorate(cls: type[FeatureStore]) -> type[FeatureStore]:
        cls.layout = name
        LAYOUTS[name] = cls
        return cls

    return decorate


class StoreWriter(abc.ABC):
    """Writes videos into a store of one layout; each `write` is atomic, reruns skip done videos."""

    path: Path

    @abc.abstractmethod
    def has(self, video_id: str) -> bool:
        """True if `video_id` was already written completely (so a rerun can skip it)."""

    @abc.abstractmethod
    def write(self, video_id: str, features: np.ndarray) -> None:
        """Write one `(T, C)` array; after it returns the video is complete on disk."""

    def close(self) -> None:
        """Finish the store (layouts with one file for all videos finalise it here)."""

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


class FeatureStore(abc.ABC):
    """Read access to `(T, C)` snippet features of many videos, keyed by video id."""

    layout: ClassVar[str] = ""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # -- what every layout implements -------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def detect(cls, path: Path) -> bool:
        """True if `path` looks like a store of this layout (used when no layout is forced)."""

    @abc.abstractmethod
    def video_ids(self) -> list[str]:
        """Sorted video ids."""

    @abc.abstractmethod
    def read(self, video_id: str) -> np.ndarray:
        """The `(T, C)` features of one video in their stored dtype; raises `StoreError`."""

    @abc.abstractmethod
    def writer(self, out: str | os.PathLike) -> StoreWriter:
        """A writer for a new store of the same layout and options at `out`."""

    # -- overridable defaults ---------------------------------------------------------------
    def window_source(self, video_id: str) -> Any:
        """A sliceable `(T, C)` view for drawing training windows without rereading the file.

        Layouts that can memory-map return a memmap; the default reads the array once.
        """
        return self.read(video_id)

    def shape(self, video_id: str) -> tuple[int, int]:
        """`(T, C)` of one video (layouts override this to avoid reading the data)."""
        return tuple(self.read(video_id).shape)  # type: ignore[return-value]

    def options(self) -> dict[str, Any]:
        """Layout options needed to reopen this store the same way (e.g. prefix/suffix)."""
        return {}

    # -- shared conveniences ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.video_ids())

    def __iter__(self) -> Iterator[str]:
        return iter(self.video_ids())

    def __contains__(self, video_id: object) -> bool:
        return video_id in set(self.video_ids())

    def dim(self) -> int:
        """Feature dimension C, read from the first video; raises `StoreError` on an empty store."""
        ids = self.video_ids()
        if not ids:
            raise StoreError(f"feature store {self.path} holds no videos")
        return self.shape(ids[0])[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def check_features(array: np.ndarray, where: str) -> np.ndarray:
    """Check that an array is a non-empty, finite-typed `(T, C)` matrix; raise `StoreError`."""
    if array.ndim != 2:
        raise StoreError(
            f"{where}: features must have shape (T, C), got shape {tuple(array.shape)}; "
            "store one 2-D array per video"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise EmptyVideoError(f"{where}: empty features of shape {tuple(array.shape)}; remove or re-extract it")
    if not np.issubdtype(array.dtype, np.floating):
        raise StoreError(f"{where}: features must be floating point, got dtype {array.dtype}")
    return array
