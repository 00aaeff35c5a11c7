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
    # True when `window_source` slices the file lazily (memmap, HDF5 dataset); otherwise training
    # caches the videos once as memory-mapped .npy files instead of holding them all in memory.
    random_access: ClassVar[bool] = False

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

        Layouts that can memory-map return a memmap (and set `random_access`); the default reads
        the whole array.
        """
        return self.read(video_id)

    def shape(self, video_id: str) -> tuple[int, int]:
        """`(T, C)` of one video (layouts override this to avoid reading the data)."""
        return tuple(self.read(video_id).shape)  # type: ignore[return-value]

    def options(self) -> dict[str, Any]:
        """Layout options needed to reopen this store the same way (e.g. prefix/suffix)."""
        return {}

    def source_of(self, video_id: str) -> str:
        """Where one video's features live, for messages (layouts with a file per video name it)."""
        return f"{self.path}[{video_id}]"

    def open_output(self, out: str | os.PathLike) -> "FeatureStore":
        """The store that `writer(out)` wrote, opened with this store's layout and options."""
        from sola.stores import open_store

        return open_store(out, layout=self.layout, **self.options())

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


class DirectoryStore(FeatureStore):
    """Shared code of layouts with one file per video: `DIR/{prefix}{video_id}{suffix}{ext}`.

    Subclasses set `extensions` (the first one is written) and implement `load_file`.
    """

    extensions: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: str | os.PathLike, prefix: str = "", suffix: str = "") -> None:
        super().__init__(path)
        if not self.path.is_dir():
            raise StoreError(f"feature directory {self.path} does not exist")
        self.prefix, self.suffix = prefix, suffix
        self._files: dict[str, Path] | None = None

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and any(
            p.name.endswith(cls.extensions) and not p.name.startswith(".") for p in path.iterdir()
        )

    def files(self) -> dict[str, Path]:
        """Video id -> file; raises `StoreError` if two files give the same id."""
        if self._files is None:
            found: dict[str, Path] = {}
            for entry in sorted(self.path.iterdir()):
                ext = next((e for e in self.extensions if entry.name.endswith(e)), None)
                if ext is None or entry.name.startswith(".") or not entry.is_file():
                    continue
                stem = entry.name[: -len(ext)]
                if not stem.startswith(self.prefix) or not stem.endswith(self.suffix):
                    continue
                video_id = stem[len(self.prefix) : len(stem) - len(self.suffix)]
                if video_id in found:
                    raise StoreError(
                        f"{self.path}: duplicate video id {video_id!r} ({found[video_id].name} and "
                        f"{entry.name}); keep one file per video"
                    )
                found[video_id] = entry
            self._files = dict(sorted(found.items()))
        return self._files

    def video_ids(self) -> list[str]:
        return list(self.files())

    def file(self, video_id: str) -> Path:
        """Path of one video's file; raises `StoreError` if the store has no such video."""
        file = self.files().get(video_id)
        if file is None:
            raise StoreError(f"{self.path}: no features for video {video_id!r}")
        return file

    @abc.abstractmethod
    def load_file(self, file: Path) -> np.ndarray:
        """Decode one file into an array (not yet checked); raises `StoreError`."""

    def read(self, video_id: str) -> np.ndarray:
        file = self.file(video_id)
        return check_features(self.load_file(file), str(file))

    def source_of(self, video_id: str) -> str:
        return str(self.file(video_id))

    def options(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "suffix": self.suffix}


class DirectoryWriter(StoreWriter):
    """Writes `OUT/{prefix}{id}{suffix}{ext}`, each file atomically; `close()` removes stale temporaries."""

    extension = ""

    def __init__(self, path: str | os.PathLike, prefix: str = "", suffix: str = "") -> None:
        self.path, self.prefix, self.suffix = Path(path), prefix, suffix
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"output {self.path} exists and is not a directory; choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Remove `.NAME.*.tmp` leftovers of killed runs (at the end: under DDP the other ranks'
        temporaries are in flight until every rank has finished)."""
        from sola.atomic import remove_stale_temporaries

        remove_stale_temporaries(self.path)

    def file(self, video_id: str) -> Path:
        """Path of one video's output file."""
        return self.path / f"{self.prefix}{video_id}{self.suffix}{self.extension}"

    def has(self, video_id: str) -> bool:
        return self.file(video_id).is_file()

    def write(self, video_id: str, features: np.ndarray) -> None:
        from sola.atomic import atomic_path

        with atomic_path(self.file(video_id)) as tmp:
            with open(tmp, "wb") as handle:
                self.dump(handle, video_id, features)

    @abc.abstractmethod
    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        """Encode one video's `(T, C)` array into an open binary file; must be deterministic."""


class PartsWriter(StoreWriter):
    """Shared code of layouts with one file for all videos (HDF5, one pickle).

    Each video is written atomically as `.OUT.parts/{id}.npy`, so a killed run loses nothing and a
    rerun skips finished videos (ranks can share the work); `close()` (one process) assembles the
    previous output and the parts into a temporary file renamed onto OUT. Subclasses implement
    `finished_ids` (videos in a complete earlier OUT) and `close`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"output {self.path} is a directory; this layout writes one file (--out FILE)")
        self.parts = self.path.parent / f".{self.path.name}.parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self._done = self.finished_ids() if self.path.is_file() else set()

    @abc.abstractmethod
    def finished_ids(self) -> set[str]:
        """Video ids already in the complete output file of an earlier run."""

    def remove_stale_temporaries(self) -> None:
        """Leftovers of killed runs: part temporaries and a half-built output file."""
        from sola.atomic import remove_stale_temporaries

        remove_stale_temporaries(self.parts)
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)

    def part(self, video_id: str) -> Path:
        """The part file of one video; raises `StoreError` for ids that cannot name a file."""
        if "/" in video_id or video_id.startswith("."):
            raise StoreError(f"video id {video_id!r} cannot name a part file")
        return self.parts / f"{video_id}.npy"

    def finished_parts(self) -> dict[str, Path]:
        """Video id -> part file of every video written since the last complete output."""
        return {p.name[: -len(".npy")]: p for p in self.parts.glob("*.npy") if not p.name.startswith(".")}

    def has(self, video_id: str) -> bool:
        return video_id in self._done or self.part(video_id).is_file()

    def write(self, video_id: str, features: np.ndarray) -> None:
        from sola.atomic import atomic_path

        with atomic_path(self.part(video_id)) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(features), allow_pickle=False)
