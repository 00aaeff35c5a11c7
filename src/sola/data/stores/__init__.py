"""Feature stores: one interface (`FeatureStore`), one module per on-disk layout.

Layouts: `npy` (directory of .npy), `csv` (directory of .csv with a header row), `hdf5` (one file,
a dataset per video), `pickle` (one pickle of {id: array}), `pickle-dir` (a pickle per video),
`npz` and `pt` (a file per video), `twostream` (DIR/rgb + DIR/flow combined along channels).
Importing a layout's module registers it (`register_layout`); the order below is the order
`LAYOUTS` lists them in.
"""

from __future__ import annotations

from sola.data.stores.base import (
    LAYOUTS,
    FeatureStore,
    StoreOption,
    StoreWriter,
    check_features,
    command_line_options,
    detect_layouts,
    open_store,
    register_layout,
)
from sola.data.stores import npy as _npy  # noqa: F401  (each import registers its layout)
from sola.data.stores import csv as _csv  # noqa: F401
from sola.data.stores import hdf5 as _hdf5  # noqa: F401
from sola.data.stores import pickle as _pickle  # noqa: F401
from sola.data.stores import pickle_dir as _pickle_dir  # noqa: F401
from sola.data.stores import npz as _npz  # noqa: F401
from sola.data.stores import pt as _pt  # noqa: F401
from sola.data.stores import twostream as _twostream  # noqa: F401

__all__ = [
    "FeatureStore",
    "StoreOption",
    "StoreWriter",
    "LAYOUTS",
    "open_store",
    "detect_layouts",
    "register_layout",
    "command_line_options",
    "check_features",
]
