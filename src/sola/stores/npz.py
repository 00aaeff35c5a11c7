"""Directories of `.npz` (key `feats`, or the only array) and `.pt` files per video (OpenTAD).

`.pt` files are loaded with `torch.load(weights_only=True)`, which refuses pickled code.
Both writers are deterministic (fixed zip timestamps), so a resumed transform is byte-identical.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sola.errors import StoreError
from sola.stores.base import DirectoryStore, DirectoryWriter, register_layout

FEATURE_KEYS = ("feats", "features", "feature")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _pick_key(keys: list[str], key: str | None, where: str) -> str:
    """The key that holds the features: `key`, else `feats`/`features`, else the only one."""
    if key is not None:
        if key not in keys:
            raise StoreError(f"{where}: no array {key!r} (has {sorted(keys)}); check --key")
        return key
    for preferred in FEATURE_KEYS:
        if preferred in keys:
            return preferred
    if len(keys) == 1:
        return keys[0]
    raise StoreError(f"{where}: holds arrays {sorted(keys)}; say which holds the features (--key NAME)")


@register_layout("npz")
class NpzStore(DirectoryStore):
    """`DIR/{prefix}{video_id}{suffix}.npz` with the features under `key` (default: `feats` or the only array)."""

    extensions = (".npz",)

    def __init__(self, path: str | os.PathLike, prefix: str = "", suffix: str = "", key: str | None = None) -> None:
        super().__init__(path, prefix, suffix)
        self.key = key
        self.compressed: bool | None = None

    def load_file(self, file: Path) -> np.ndarray:
        try:
            with np.load(file, allow_pickle=False) as archive:
                key = _pick_key(list(archive.files), self.key, str(file))
                array = archive[key]
                if self.compressed is None:
                    info = archive.zip.getinfo(f"{key}.npy")
                    self.compressed = info.compress_type != zipfile.ZIP_STORED
                    self.key = key
        except StoreError:
            raise
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
            raise StoreError(
                f"{file}: not a readable .npz archive ({type(exc).__name__}: {exc}); it is truncated or "
                "corrupt: re-download or re-extract it"
            ) from None
        return array

    def _probe(self) -> None:
        if self.compressed is None and self.video_ids():
            self.read(self.video_ids()[0])

    def options(self) -> dict[str, Any]:
        self._probe()
        return {**super().options(), "key": self.key}

    def writer(self, out: str | os.PathLike) -> "NpzWriter":
        self._probe()
        return NpzWriter(Path(out), self.prefix, self.suffix, key=self.key or "feats", compressed=bool(self.compressed))


class NpzWriter(DirectoryWriter):
    """One `.npz` per video with one array `key`; zip entries carry a fixed timestamp."""

    extension = ".npz"

    def __init__(
        self, path: Path, prefix: str = "", suffix: str = "", key: str = "feats", compressed: bool = False
    ) -> None:
        super().__init__(path, prefix, suffix)
        self.key, self.compressed = key, compressed

    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        info = zipfile.ZipInfo(f"{self.key}.npy", date_time=_ZIP_EPOCH)
        info.compress_type = zipfile.ZIP_DEFLATED if self.compressed else zipfile.ZIP_STORED
        info.external_attr = 0o600 << 16
        with zipfile.ZipFile(handle, mode="w", allowZip64=True) as archive:
            with archive.open(info, mode="w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, np.ascontiguousarray(features), allow_pickle=False)


@register_layout("pt")
class PtStore(DirectoryStore):
    """`DIR/{prefix}{video_id}{suffix}.pt`: a tensor, or a dict with the feature tensor under `key`."""

    extensions = (".pt", ".pth")

    def __init__(self, path: str | os.PathLike, prefix: str = "", suffix: str = "", key: str | None = None) -> None:
        super().__init__(path, prefix, suffix)
        self.key = key
        self._wrapped: bool | None = None

    def load_file(self, file: Path) -> np.ndarray:
        import pickle

        import torch

        try:
            value = torch.load(file, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            # torch's own text suggests weights_only=False (running the file's code): name what it asked for only
            asked = re.search(r"GLOBAL ([\w.]+)", str(exc))
            raise StoreError(
                f"{file}: refused: it holds more than tensors{f' (it asks for {asked.group(1)})' if asked else ''}, "
                "and loading it could run code; re-save the features as a plain tensor (torch.save(tensor, file))"
            ) from None
        except (RuntimeError, EOFError, OSError, ValueError) as exc:
            raise StoreError(
                f"{file}: not a readable .pt file ({str(exc).splitlines()[0]}); it is truncated or corrupt: "
                "re-download or re-extract it"
            ) from None
        key = None
        if isinstance(value, dict):
            key = _pick_key([str(k) for k in value], self.key, str(file))
            value = value[key]
        if self._wrapped is None:
            self._wrapped, self.key = key is not None, key
        if isinstance(value, torch.Tensor):
            if value.dtype == torch.bfloat16:
                raise StoreError(f"{file}: bfloat16 features have no NumPy dtype; re-save them as float16/32")
            return value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            return value
        raise StoreError(f"{file}: holds a {type(value).__name__}, not a feature tensor")

    def _probe(self) -> None:
        if self._wrapped is None and self.video_ids():
            self.read(self.video_ids()[0])

    def options(self) -> dict[str, Any]:
        self._probe()
        return {**super().options(), "key": self.key}

    def writer(self, out: str | os.PathLike) -> "PtWriter":
        self._probe()
        return PtWriter(Path(out), self.prefix, self.suffix, key=self.key if self._wrapped else None)


class PtWriter(DirectoryWriter):
    """One `.pt` per video (`torch.save` of a tensor, or of `{key: tensor}` like the source)."""

    extension = ".pt"

    def __init__(self, path: Path, prefix: str = "", suffix: str = "", key: str | None = None) -> None:
        super().__init__(path, prefix, suffix)
        self.key = key

    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(features))
        # Saved to an open handle, the archive's inner folder is always "archive": no file name inside.
        torch.save({self.key: tensor} if self.key else tensor, handle)
