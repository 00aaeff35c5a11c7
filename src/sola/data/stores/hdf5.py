"""One HDF5 file, one dataset per video (TSP `video-name -> (N, 512)`, G-TAD `csv_mean_100.hdf5`).

Reading opens the file once and reads one dataset at a time: the file is never loaded whole.
Writing is crash-safe: each finished video goes to a hidden sidecar directory of `.npy` parts
(`.OUT.parts/`, one atomic file per video, so a rerun resumes video by video); `close()` then
builds the HDF5 file in a temporary file, in sorted video order, and renames it onto `OUT`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from sola.core.atomic import atomic_path
from sola.core.errors import StoreError
from sola.data.stores.base import KEY, PartsWriter, SingleFileStore, StoreOption, check_features, register_layout
from sola.data.stores.sniff import pick_key

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
GROUP = StoreOption("group", str, "HDF5 group that holds the videos (default: the top level)", cli=False)


def _h5py():
    import h5py

    return h5py


@register_layout("hdf5")
class Hdf5Store(SingleFileStore):
    """`FILE.h5` with a dataset `video_id` (or a group `video_id` holding dataset `key`) per video."""

    random_access = True
    suffixes = HDF5_SUFFIXES
    signature = HDF5_SIGNATURE
    kind = "HDF5"
    declared_options = (KEY, GROUP)

    def __init__(self, path: str | os.PathLike, key: str | None = None, group: str = "") -> None:
        super().__init__(path)
        self.key, self.group = key, group.strip("/")
        self._handle = None
        self._pid = None
        self._ids_and_key: tuple[list[str], str | None] | None = None  # (video ids, dataset name), read once
        self._compression: dict[str, Any] | None = None

    def _file(self):
        """The open `h5py.File` (reopened in a forked child process, and after `close`)."""
        if self._handle is None or self._pid != os.getpid():
            h5py = _h5py()
            try:
                self._handle = h5py.File(self.path, "r")
            except OSError as exc:
                raise StoreError(
                    f"{self.path}: not a readable HDF5 file ({exc}); it is truncated or corrupt: "
                    "re-download or re-extract it"
                ) from None
            self._pid = os.getpid()
        return self._handle

    def _root(self):
        handle = self._file()
        if not self.group:
            return handle
        if self.group not in handle:
            raise StoreError(f"{self.path}: no group {self.group!r} (top level: {sorted(handle)[:5]}); open the store "
                             "with the group that holds the videos (open_store(..., group=...))")
        return handle[self.group]

    def _structure(self) -> tuple[list[str], str | None]:
        """Sorted video ids, and the dataset name inside each video's group (None: each video is a
        dataset): `key`, else sniffed from the first video's group."""
        if self._ids_and_key is None:
            h5py = _h5py()
            root = self._root()
            try:
                names = sorted(root.keys())
                key = self.key
                if key is None and names and isinstance(root[names[0]], h5py.Group):
                    first = root[names[0]]
                    datasets = [k for k, v in first.items() if isinstance(v, h5py.Dataset)]
                    key = pick_key(datasets, None, f"{self.path}: group {names[0]!r}", noun="dataset")
            except (OSError, RuntimeError, KeyError) as exc:
                raise StoreError(f"{self.path}: corrupt HDF5 index ({exc}); re-download or re-extract it") from None
            self._ids_and_key = (names, key)
        return self._ids_and_key

    def video_ids(self) -> list[str]:
        return list(self._structure()[0])

    def dataset(self, video_id: str):
        """The `h5py.Dataset` of one video (not read); raises `StoreError`."""
        _, key = self._structure()
        root = self._root()
        dataset = _h5py().Dataset
        try:
            node = root[video_id]
            if key is not None and isinstance(node, dataset):
                raise StoreError(
                    f"{self.path}: {video_id!r} is a dataset but other videos are groups holding {key!r}; "
                    "store every video the same way (all datasets, or all groups with the same dataset name)"
                )
            if key is not None:
                node = node[key]
        except KeyError:
            raise StoreError(f"{self.path}: no dataset for video {video_id!r}"
                             f"{f' (no {key!r} in its group; check --key)' if key else ''}") from None
        except (OSError, RuntimeError, ValueError) as exc:
            raise StoreError(f"{self.path}: video {video_id!r} is unreadable ({exc}); the file is corrupt") from None
        if not isinstance(node, dataset):
            raise StoreError(
                f"{self.path}: {video_id!r} is a group, not a dataset; give --key NAME naming the dataset inside "
                "each video's group (every video must be stored the same way)"
            )
        return node

    def read(self, video_id: str) -> np.ndarray:
        dataset = self.dataset(video_id)
        try:
            array = dataset[()]
        except (OSError, RuntimeError, ValueError) as exc:
            raise StoreError(
                f"{self.path}: dataset {video_id!r} is unreadable ({exc}); the file is truncated or corrupt"
            ) from None
        return check_features(np.asarray(array), self.source_of(video_id))

    def window_source(self, video_id: str):
        dataset = self.dataset(video_id)
        if dataset.ndim != 2 or 0 in dataset.shape:
            self.read(video_id)  # raises the shape/empty error
        return dataset

    def shape(self, video_id: str) -> tuple[int, int]:
        shape = self.dataset(video_id).shape
        if len(shape) != 2:
            self.read(video_id)
        return tuple(shape)  # type: ignore[return-value]

    def compression(self) -> dict[str, Any]:
        """h5py dataset options (`compression`, `compression_opts`, `shuffle`) of the first video."""
        if self._compression is None:
            ids = self.video_ids()
            self._compression = {}
            if ids:
                first = self.dataset(ids[0])
                if first.compression:
                    self._compression = {
                        "compression": first.compression,
                        "compression_opts": first.compression_opts,
                        "shuffle": bool(first.shuffle),
                    }
        return self._compression

    def options(self) -> dict[str, Any]:
        return {"key": self._structure()[1], "group": self.group}

    def writer(self, out: str | os.PathLike) -> "Hdf5Writer":
        return Hdf5Writer(Path(out), key=self._structure()[1], group=self.group, dataset_options=self.compression())

    def close(self) -> None:
        """Close the open file handle (reads reopen it)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class Hdf5Writer(PartsWriter):
    """Resumable HDF5 output: per-video parts in `.OUT.parts/`, assembled and renamed by `close()`."""

    def __init__(
        self, path: Path, key: str | None = None, group: str = "", dataset_options: dict[str, Any] | None = None
    ) -> None:
        self.key, self.group = key, group.strip("/")
        self.dataset_options = dataset_options or {}
        super().__init__(path)

    def open_previous(self) -> Hdf5Store:
        return Hdf5Store(self.path, key=self.key, group=self.group)

    def assemble(self, parts: dict[str, Path]) -> None:
        """Build the HDF5 file from the previous output (if any) and the parts."""
        h5py = _h5py()
        with atomic_path(self.path) as tmp, contextlib.ExitStack() as stack:
            previous = None
            if self.keeps_previous():  # closed before the rename onto it
                previous = stack.enter_context(Hdf5Store(self.path, key=self.key, group=self.group))
            ids = sorted(set(parts) | (set(previous.video_ids()) if previous else set()))
            with h5py.File(tmp, "w", track_order=False) as out:
                root = out.require_group(self.group) if self.group else out
                for video_id in ids:
                    if video_id in parts:
                        array = np.load(parts[video_id], mmap_mode="r", allow_pickle=False)
                    else:
                        array = previous.read(video_id)
                    target = root.create_group(video_id) if self.key else root
                    target.create_dataset(
                        self.key or video_id, data=array, track_times=False, **self.dataset_options
                    )
                    del array
