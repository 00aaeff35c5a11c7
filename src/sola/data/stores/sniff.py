"""Looking inside feature files: what kind of file one is, and which entry of it holds the features.

Written once for every layout: `file_looks_like` (a suffix, or the first bytes) detects one-file
stores; `pick_key` / `select_feature` choose the features inside a dict, an `.npz` archive or an
HDF5 group: the `key` the user gave, else `feats` / `features` / `feature`, else the only entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from sola.core.errors import StoreError

FEATURE_KEYS = ("feats", "features", "feature")


def file_looks_like(path: Path, suffixes: tuple[str, ...], signature: bytes = b"",
                    foreign_suffixes: tuple[str, ...] = ()) -> bool:
    """True if `path` is a file named with one of `suffixes`, or one that starts with `signature`
    and is not named with one of `foreign_suffixes` (other formats that start the same way)."""
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix in suffixes:
        return True
    if not signature or suffix in foreign_suffixes:
        return False
    with open(path, "rb") as handle:
        return handle.read(len(signature)) == signature


def pick_key(keys: Iterable[str], key: str | None, where: str, noun: str = "array") -> str:
    """The entry that holds the features: `key`, else `feats`/`features`/`feature`, else the only one.

    `where` names the file (or group) for messages; raises `StoreError` when `key` is absent or
    nothing says which entry to take.
    """
    names = sorted(keys)
    if key is not None:
        if key not in names:
            raise StoreError(f"{where}: no {noun} {key!r} (has {names}); check --key")
        return key
    for preferred in FEATURE_KEYS:
        if preferred in names:
            return preferred
    if len(names) == 1:
        return names[0]
    if not names:
        raise StoreError(f"{where}: holds no {noun}s; store one feature {noun} per video")
    raise StoreError(f"{where}: holds {noun}s {names}; say which holds the features (--key NAME)")


def select_feature(value: Any, key: str | None, where: str, entry_types: tuple[type, ...] | None = None
                   ) -> tuple[Any, str | None]:
    """The features in one loaded value and the dict key they came from (None when `value` is bare).

    A dict's entry is chosen by `pick_key` among the entries of `entry_types` (all when None);
    anything else is returned as it is. Raises `StoreError`.
    """
    if not isinstance(value, dict):
        return value, None
    entries = {str(k): v for k, v in value.items() if entry_types is None or isinstance(v, entry_types)}
    chosen = pick_key(entries, key, where)
    return entries[chosen], chosen
