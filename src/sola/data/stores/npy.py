"""A directory with one `.npy` of shape (T, C) per video (ActionFormer, TriDet, HACS, SoLa's own)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from sola.core.errors import StoreError
from sola.data.stores.base import DirectoryStore, DirectoryWriter, check_features, register_layout


def npy_header(file: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of a `.npy` file, checked against the file's size.

    The one safe reader of `.npy` headers: a 0-byte, truncated or garbled file, or one whose header
    claims more data than the file holds, raises `StoreError` naming the file (before anything the
    header asks for is allocated).
    """
    fix = "re-extract or re-download it"
    try:
        with open(file, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                raise StoreError(f"{file}: an empty (0-byte) .npy file; {fix}")
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(handle)
            offset = handle.tell()
    except (ValueError, EOFError, SyntaxError, TypeError, UnicodeDecodeError) as exc:
        raise StoreError(f"{file}: not a readable .npy file ({exc}); it is truncated or corrupt: {fix}") from None
    except OSError as exc:
        raise StoreError(f"{file}: cannot read ({exc.strerror or exc})") from None
    if dtype.hasobject:
        raise StoreError(f"{file}: holds Python objects (a pickle), not numbers; sola does not unpickle them: "
                         "save the features as a float array (numpy.save)")
    if any(n < 0 for n in shape):
        raise StoreError(f"{file}: its header states the impossible shape {shape}; {fix}")
    expected = offset + math.prod(shape) * dtype.itemsize
    if size < expected:
        raise StoreError(f"{file}: truncated .npy file ({size} bytes; its header {shape} {dtype} needs {expected}); "
                         f"{fix}")
    return tuple(shape), bool(fortran), dtype, offset


def load_npy(file: Path, mmap: bool = False) -> np.ndarray:
    """The array of a `.npy` file (memory-mapped with `mmap`), never unpickled; raises `StoreError`."""
    npy_header(file)
    try:
        return np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise StoreError(
            f"{file}: not a readable .npy array ({exc}); the file is truncated, corrupt or "
            "holds pickled objects: re-extract or re-download it"
        ) from None
    except OSError as exc:
        raise StoreError(f"{file}: cannot read ({exc})") from None


def npy_source(file: Path) -> "NpyRows | np.ndarray":
    """One `.npy` as a sliceable `(T, C)` source: its rows (`NpyRows`), else the memory-mapped array."""
    rows = NpyRows.open(file)
    return rows if rows is not None else load_npy(file, mmap=True)


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
        """Rows of `file`, or None when it is not a plain 2-D C-ordered array (read it another way).

        Raises `StoreError` for a file that is not a complete `.npy` (`npy_header`).
        """
        shape, fortran, dtype, offset = npy_header(file)
        if fortran or len(shape) != 2:
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
        return load_npy(file, mmap)

    def window_source(self, video_id: str) -> "NpyRows | np.ndarray":
        file = self.file(video_id)
        return check_features(npy_source(file), str(file))

    def shape(self, video_id: str) -> tuple[int, int]:
        return tuple(self.window_source(video_id).shape)  # type: ignore[return-value]

    def writer(self, out: str | os.PathLike) -> "NpyWriter":
        return NpyWriter(Path(out), self.prefix, self.suffix)


class NpyWriter(DirectoryWriter):
    """Writes `OUT/{prefix}{id}{suffix}.npy` atomically (temporary file + rename)."""

    extension = ".npy"
    layout = "npy"

    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        np.save(handle, np.ascontiguousarray(features), allow_pickle=False)
