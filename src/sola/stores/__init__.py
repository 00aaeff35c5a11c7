"""Feature stores: one interface (`FeatureStore`), one module per on-disk layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sola.errors import StoreError
from sola.stores.base import LAYOUTS, FeatureStore, StoreWriter, check_features, register_layout
from sola.stores import npy as _npy  # noqa: F401  (registers the layout)

__all__ = ["FeatureStore", "StoreWriter", "LAYOUTS", "open_store", "register_layout", "check_features"]


def open_store(path: str | os.PathLike, layout: str | None = None, **options: Any) -> FeatureStore:
    """Open a feature store, detecting its layout from `path` unless `layout` is given.

    Raises `StoreError` if the path does not exist, the layout is unknown or cannot be detected.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"feature store {path} does not exist")
    if layout is not None:
        if layout not in LAYOUTS:
            raise StoreError(f"unknown feature layout {layout!r}; known: {', '.join(sorted(LAYOUTS))}")
        return LAYOUTS[layout](path, **options)
    for cls in LAYOUTS.values():
        if cls.detect(path):
            return cls(path, **options)
    raise StoreError(
        f"cannot tell the feature layout of {path}; expected one of {', '.join(sorted(LAYOUTS))} "
        "(force one with --layout)"
    )
