"""Pickled features: one pickle holding a dict `video_id -> array` (a pickle per video: `pickle_dir`).

Used by the TSP feature extractor and some ActivityNet releases. A pickle can run arbitrary code
when loaded, so every pickle goes through `safe_load`, which admits only NumPy arrays, dicts,
lists, tuples, strings and numbers, and refuses anything else saying what it asked for.
A one-file pickle store is held in memory whole (a pickle cannot be read in part); use a directory
of pickles or HDF5 for datasets larger than memory.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from sola.core.atomic import atomic_path
from sola.core.errors import StoreError
from sola.core.safe_load import load_pickle
from sola.data.stores.base import KEY, PartsWriter, SingleFileStore, check_features, register_layout
from sola.data.stores.sniff import select_feature

PICKLE_SUFFIXES = (".pkl", ".pickle")
PROTOCOL = 4  # fixed, so that output bytes do not depend on the Python version's default

_FIX = "; re-save the features as plain NumPy arrays (e.g. numpy.save per video)"


def safe_load(file: Path) -> Any:
    """Unpickle `file` admitting only NumPy arrays, dicts, lists and scalars (`sola.core.safe_load`);
    raises `UnsafePickleError` or `StoreError`."""
    return load_pickle(file, StoreError, _FIX)


def pickled_features(value: Any, key: str | None, where: str) -> tuple[np.ndarray, str | None]:
    """The feature array inside one unpickled value, and the dict key it came from (None if bare)."""
    value, key = select_feature(value, key, where, entry_types=(np.ndarray, list))
    if isinstance(value, list):
        try:
            value = np.asarray(value, dtype=np.float32)
        except (TypeError, ValueError):
            raise StoreError(f"{where}: a list that is not a numeric matrix; store an array per video") from None
    if not isinstance(value, np.ndarray):
        raise StoreError(f"{where}: holds a {type(value).__name__}, not a feature array")
    return value, key


def dump_pickle(handle, obj: Any) -> None:
    """Pickle `obj` with the fixed protocol (output bytes independent of the Python version)."""
    pickle.dump(obj, handle, protocol=PROTOCOL)


@register_layout("pickle")
class PickleFileStore(SingleFileStore):
    """One pickle file holding `{video_id: array}` (or `{video_id: {key: array}}`), loaded whole."""

    suffixes = PICKLE_SUFFIXES
    signature = b"\x80"  # protocol >= 2 pickles open with the PROTO opcode
    foreign_suffixes = (".pt", ".pth")  # torch archives of old torch versions are pickles too
    kind = "pickle"
    declared_options = (KEY,)

    def __init__(self, path: str | os.PathLike, key: str | None = None) -> None:
        super().__init__(path)
        self.key = key
        self._data: dict[str, Any] | None = None  # the whole file, loaded once

    def _videos(self) -> dict[str, Any]:
        if self._data is None:
            data = safe_load(self.path)
            if not isinstance(data, dict):
                raise StoreError(
                    f"{self.path}: holds a {type(data).__name__}, not a dict of video id -> features; "
                    "a one-file pickle store must map video ids to arrays"
                )
            videos: dict[str, Any] = {}
            for raw, value in data.items():
                video_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                if video_id in videos:
                    raise StoreError(f"{self.path}: duplicate video id {video_id!r}; keep one entry per video")
                videos[video_id] = value
            self._data = dict(sorted(videos.items()))
        return self._data

    def video_ids(self) -> list[str]:
        return list(self._videos())

    def _entry(self, video_id: str) -> tuple[np.ndarray, str | None]:
        videos = self._videos()
        if video_id not in videos:
            raise StoreError(f"{self.path}: no features for video {video_id!r}")
        return pickled_features(videos[video_id], self.key, self.source_of(video_id))

    def read(self, video_id: str) -> np.ndarray:
        return check_features(self._entry(video_id)[0], self.source_of(video_id))

    def stored_key(self) -> str | None:
        """The key the videos hold their features under (None: bare arrays), sniffed from the first video."""
        ids = self.video_ids()
        return self._entry(ids[0])[1] if ids else self.key

    def options(self) -> dict[str, Any]:
        return {"key": self.stored_key()}

    def writer(self, out: str | os.PathLike) -> "PickleFileWriter":
        return PickleFileWriter(Path(out), key=self.stored_key())

    def close(self) -> None:
        """Let go of the loaded file (a later read loads it again)."""
        self._data = None


class PickleFileWriter(PartsWriter):
    """One-file pickle output: per-video `.npy` parts in `.OUT.parts/`, pickled together by `close()`."""

    def __init__(self, path: Path, key: str | None = None) -> None:
        self.key = key
        super().__init__(path)

    def finished_ids(self) -> set[str]:
        return set(PickleFileStore(self.path).video_ids())

    def assemble(self, parts: dict[str, Path]) -> None:
        """Pickle the previous output (if any) and the parts as one dict, sorted by id."""
        videos: dict[str, Any] = {}
        if self.path.is_file():
            previous = PickleFileStore(self.path, key=self.key)
            videos = {video_id: previous.read(video_id) for video_id in previous.video_ids()}
        for video_id, part in parts.items():
            videos[video_id] = np.load(part, allow_pickle=False)
        # Canonical dtype objects: pickle memoizes dtypes by identity, so arrays that came from an
        # earlier pickle (their own dtype instance) would otherwise change the output bytes.
        videos = {k: v.view(np.dtype(v.dtype.str)) for k, v in videos.items()}
        data = {k: ({self.key: v} if self.key else v) for k, v in sorted(videos.items())}
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as handle:
                dump_pickle(handle, data)

