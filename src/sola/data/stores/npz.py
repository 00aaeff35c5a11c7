"""A directory of `.npz` files per video (OpenTAD): the features under `key`, `feats`, or the only array.

The writer is deterministic (fixed zip timestamps), so a resumed transform is byte-identical, and
stores the array compressed or not like the source.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from sola.core.errors import StoreError
from sola.data.stores.base import KeyedDirectoryStore, KeyedDirectoryWriter, register_layout
from sola.data.stores.sniff import pick_key

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
T = TypeVar("T")


class NpzWriter(KeyedDirectoryWriter):
    """One `.npz` per video with one array `key` (default `feats`); zip entries carry a fixed timestamp."""

    extension = ".npz"
    layout = "npz"

    def __init__(
        self, path: Path, prefix: str = "", suffix: str = "", key: str | None = "feats", compressed: bool = False
    ) -> None:
        super().__init__(path, prefix, suffix, key or "feats")
        self.compressed = compressed

    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        info = zipfile.ZipInfo(f"{self.key}.npy", date_time=_ZIP_EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED if self.compressed else zipfile.ZIP_STORED
        info.external_attr = 0o600 << 16
        with zipfile.ZipFile(handle, mode="w", allowZip64=True) as archive:
            with archive.open(info, mode="w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.ascontiguousarray(features), allow_pickle=False)


@register_layout("npz")
class NpzStore(KeyedDirectoryStore):
    """`DIR/{prefix}{video_id}{suffix}.npz` with the features under `key` (default: `feats` or the only array)."""

    extensions = (".npz",)
    writer_class = NpzWriter

    def _open(self, file: Path, use: Callable[[Any, str], T]) -> T:
        """`use(archive, key)` on one open archive; raises `StoreError` naming the file."""
        try:
            with np.load(file, allow_pickle=False) as archive:
                return use(archive, pick_key(archive.files, self.key, str(file)))
        except StoreError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise StoreError(
                f"{file}: not a readable .npz archive ({type(exc).__name__}: {exc}); it is truncated or "
                "corrupt: re-download or re-extract it"
            ) from None

    def load_entry(self, file: Path) -> tuple[np.ndarray, str | None]:
        return self._open(file, lambda archive, key: (archive[key], key))

    def sniff_file(self, file: Path) -> dict[str, Any]:
        """The key and whether it is compressed, from the zip index (the array is not read)."""

        def look(archive, key: str) -> dict[str, Any]:
            compressed = archive.zip.getinfo(f"{key}.npy").compress_type != zipfile.ZIP_STORED
            return {"key": key, "compressed": compressed}

        return self._open(file, look)
