"""`SoLa`: the scikit-learn-style face of the library: fit on a store, transform stores or arrays."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sola.adapt.adapter import SoLaAdapter, load_adapter, save_adapter
from sola.adapt.fit import fit_adapter
from sola.adapt.transform import apply_adapter, transform_store
from sola.core.config import SoLaConfig
from sola.core.errors import SolaError
from sola.data.stores import FeatureStore, open_store


def as_store(features: FeatureStore | str | os.PathLike, **options: Any) -> FeatureStore:
    """Accept an open `FeatureStore` or a path to one."""
    return features if isinstance(features, FeatureStore) else open_store(features, **options)


class SoLa:
    """Soft-Landing adapter as an estimator.

    >>> model = SoLa().fit("features/", run_dir="runs/sola")     # unlabeled (T, C) features
    >>> model.transform("features/", "features_sola/")           # same layout, same dtype
    """

    def __init__(self, config: SoLaConfig | None = None) -> None:
        self.config = (config or SoLaConfig()).validate()
        self.adapter_: SoLaAdapter | None = None

    def fit(
        self,
        features: FeatureStore | str | os.PathLike,
        run_dir: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = True,
        log: Callable[[str], None] = print,
    ) -> "SoLa":
        """Fit the adapter by Similarity Matching on every video of `features`; returns self."""
        self.adapter_ = fit_adapter(as_store(features), self.config, run_dir, resume, progress, log)
        return self

    def _fitted(self) -> SoLaAdapter:
        if self.adapter_ is None:
            raise SolaError("this SoLa model is not fitted yet: call fit() or SoLa.load(path) first")
        return self.adapter_

    def transform(
        self,
        features: FeatureStore | str | os.PathLike,
        out: str | os.PathLike,
        progress: bool = True,
    ) -> FeatureStore:
        """Write the adapted features of every video to `out` (same layout); returns the new store."""
        store = as_store(features)
        settings = self.config.transform
        transform_store(self._fitted(), store, out, settings.chunk_size, settings.device, progress, settings.nan_policy)
        return store.open_output(out)

    def fit_transform(
        self, features: FeatureStore | str | os.PathLike, out: str | os.PathLike, **fit_options: Any
    ) -> FeatureStore:
        """`fit(features)` then `transform(features, out)`."""
        return self.fit(features, **fit_options).transform(features, out)

    def transform_array(self, features: np.ndarray) -> np.ndarray:
        """Adapt one video's features `(T, C)` in memory; same shape and dtype."""
        return apply_adapter(self._fitted(), features, self.config.transform.chunk_size)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted adapter as safetensors."""
        return save_adapter(self._fitted(), path)

    @classmethod
    def load(cls, path: str | os.PathLike, config: SoLaConfig | None = None) -> "SoLa":
        """A fitted `SoLa` from an adapter file or a run directory."""
        model = cls(config)
        model.adapter_ = load_adapter(path)
        return model
