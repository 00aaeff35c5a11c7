"""Feature stores: one interface (`FeatureStore`), one module per on-disk layout.

Layouts: `npy` (directory of .npy), `csv` (directory of .csv with a header row), `hdf5` (one file,
a dataset per video), `pickle` (one pickle of {id: array}), `pickle-dir` (a pickle per video),
`npz` and `pt` (a file per video), `twostream` (DIR/rgb + DIR/flow combined along channels).
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from sola.errors import StoreError
from sola.stores.base import LAYOUTS, FeatureStore, StoreWriter, check_features, register_layout
from sola.stores import npy as _npy  # noqa: F401  (each import registers its layouts)
from sola.stores import csv as _csv  # noqa: F401
from sola.stores import hdf5 as _hdf5  # noqa: F401
from sola.stores import npz as _npz  # noqa: F401
from sola.stores import pickle as _pickle  # noqa: F401
from sola.stores import twostream as _twostream  # noqa: F401

__all__ = ["FeatureStore", "StoreWriter", "LAYOUTS", "open_store", "register_layout", "check_features"]


def detect_layouts(path: Path) -> list[str]:
    """Names of every layout whose `detect` accepts `path`."""
    return [name for name, cls in LAYOUTS.items() if cls.detect(path)]


def open_store(path: str | os.PathLike, layout: str | None = None, **options: Any) -> FeatureStore:
    """Open a feature store, detecting its layout from `path` unless `layout` is given.

    `options` go to the layout (e.g. `prefix="v_"`, `key="feats"`). Raises `StoreError` if the
    path does not exist, the layout is unknown, cannot be detected, or several layouts match.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"feature store {path} does not exist")
    if layout is None:
        found = detect_layouts(path)
        if len(found) > 1:
            raise StoreError(
                f"{path} looks like several feature layouts ({', '.join(found)}); force one with --layout"
            )
        if not found:
            raise StoreError(
                f"cannot tell the feature layout of {path}; expected one of {', '.join(sorted(LAYOUTS))} "
                "(force one with --layout)"
            )
        layout = found[0]
    if layout not in LAYOUTS:
        raise StoreError(f"unknown feature layout {layout!r}; known: {', '.join(sorted(LAYOUTS))}")
    cls = LAYOUTS[layout]
    try:
        inspect.signature(cls).bind(path, **options)
    except TypeError as exc:
        raise StoreError(f"layout {layout!r} does not take these options ({exc})") from None
    return cls(path, **options)
