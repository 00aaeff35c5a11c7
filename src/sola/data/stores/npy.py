"""A directory with one `.npy` of shape (T, C) per video (ActionFormer, TriDet, HACS, SoLa's own)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sola.core.errors import StoreError
from sola.data.stores.base import DirectoryStore, DirectoryWriter, check_features, register_layout


class NpyRows:
    """The rows of a 2-D C-ordered `.npy` file, read on demand with `os.pread`: `rows[a:b]` -> `(b-a, C)`.

    Unlike a memory map, nothing of the file stays in this process's memory between reads (a memory
    map keeps every page it touched resident, so a fit or a head reading windows of a 100 GB store
    would grow towards 100 GB of resident memory); each read opens and closes the file, so no file
    handle is held per video. Other index types read the whole array first.
    """

    def __init__(self, file: Path, shape: tuple[int, int], dtype: np.dtype, offset: int) -> None:
        self.file, self.shape, self.dtype, self.offset = file, shape, dtype, offset
        self.ndim = 2
        self.row_bytes = shape[1] * dtype.itemsize

    @classmethod
    def open(cls, file: Path) -> "NpyRows | None":
        """Rows of `file`, or None when it is not a plain 2-D C-ordered array (read it another way)."""
        with open(file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
        if fortran or len(shape) != 2 or dtype.hasobject:
            return None
        return cls(file, shape, dtype, offset)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if not (isinstance(index, slice) and index.step in (None, 1)):
            return self[:][index]
        start, stop, _ = index.indices(self.shape[0])
        count = max(0, stop - start)
        size = count * self.row_bytes
        fd = os.open(self.file, os.O_RDONLY)
        try:
            data = os.pread(fd, size, self.offset + start * self.row_bytes) if size else b""
        finally:
            os.close(fd)
        if len(data) != size:
            raise StoreError(f"{self.file}: truncated .npy file (wanted {size} bytes at row {start}, got {len(data)})")
        return np.frombuffer(data, dtype=self.dtype).reshape(count, self.shape[1])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[:]
        return array if dtype is None else array.astype(dtype, copy=False)


@register_layout("npy")
class NpyStore(DirectoryStore):
    """`DIR/{prefix}{video_id}{suffix}.npy`; training windows are read row by row (`NpyRows`)."""

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

    def window_source(self, video_id: str) -> "NpyRows | np.ndarray":
        file = self.file(video_id)
        try:
            rows = NpyRows.open(file)
        except (ValueError, OSError):
            rows = None  # load_file names what is wrong with it
        return check_features(rows if rows is not None else self.load_file(file, mmap=True), str(file))

    def shape(self, video_id: str) -> tuple[int, int]:
        return tuple(self.window_source(video_id).shape)  # type: ignore[return-value]

    def writer(self, out: str | os.PathLike) -> "NpyWriter":
        return NpyWriter(Path(out), self.prefix, self.suffix)


class NpyWriter(DirectoryWriter):
    """Writes `OUT/{prefix}{id}{suffix}.npy` atomically (temporary file + rename)."""

    extension = ".npy"

    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        np.save(handle, np.ascontiguousarray(features), allow_pickle=False)
