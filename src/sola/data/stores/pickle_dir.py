"""A directory with one pickle per video, each an array or a dict with one feature array.

Every file goes through `sola.data.stores.pickle.safe_load` (NumPy arrays, dicts, lists and scalars only).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sola.data.stores.base import KeyedDirectoryStore, KeyedDirectoryWriter, register_layout
from sola.data.stores.pickle import PICKLE_SUFFIXES, dump_pickle, pickled_features, safe_load


class PickleDirWriter(KeyedDirectoryWriter):
    """One pickle per video, as a bare array or `{key: array}` like the source."""

    extension = ".pkl"
    layout = "pickle-dir"

    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        dump_pickle(handle, self.payload(np.ascontiguousarray(features)))


@register_layout("pickle-dir")
class PickleDirStore(KeyedDirectoryStore):
    """`DIR/{prefix}{video_id}{suffix}.pkl`, each holding an array or a dict with one feature array."""

    extensions = PICKLE_SUFFIXES
    writer_class = PickleDirWriter

    def load_entry(self, file: Path) -> tuple[np.ndarray, str | None]:
        return pickled_features(safe_load(file), self.key, str(file))
