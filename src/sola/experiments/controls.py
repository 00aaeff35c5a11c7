"""The control modes of `sola compare` and `sola ablate`: the features of "smooth" and "untrained".

`control_store` writes them in `OUT/{mode}_features` through `sola.adapt.transform.transform_store` (as
the "sola" features) and records in `OUT/controls.json` what made them, so that results of a control
made another way are refused rather than mixed (results resume per mode and seed).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from sola.adapt.adapter import adapter_digest, load_adapter
from sola.adapt.controls import SmoothConfig, TemporalSmoother, store_departure, untrained_adapter
from sola.adapt.transform import transform_store
from sola.core.atomic import atomic_write_text
from sola.core.config import SoLaConfig
from sola.core.errors import ConfigError
from sola.core.runs import read_json
from sola.data.stores import FeatureStore
from sola.experiments.compare_table import CONTROLS, RESULTS

CONTROL_RECORD = "controls.json"  # in OUT: what made each control's features


def adapter_shape(adapter=None, sola_config: SoLaConfig | None = None) -> dict:
    """The architecture of the "sola" adapter: that of `adapter` (object, file or run directory), else
    `sola_config`'s (the shape a fit here gives)."""
    if adapter is not None:
        return dict((adapter if hasattr(adapter, "shape") else load_adapter(adapter)).shape)
    return asdict((sola_config or SoLaConfig()).adapter)


def control_store(mode: str, store: FeatureStore, out_dir: str | Path, shape: dict, sola_features=None,
                  smooth: dict | None = None, seed: int = 0, progress: bool = True,
                  log: Callable[[str], None] = print) -> tuple[FeatureStore, dict]:
    """The features of control `mode` ("smooth" or "untrained") of `store`, in `out_dir/{mode}_features`.

    `shape`: the SoLa adapter's architecture (`adapter_shape`): the smoothing's size and dilation and
    the untrained adapter's. `smooth`: `SmoothConfig` fields over that geometry (kernel, kernel_size,
    dilation, sigma). "untrained" needs `sola_features` (the "sola" mode's store; `store` itself when
    SoLa kept the identity): its departure is matched, with g's weights of seed `seed`; a departure of
    0 gives the identity, and `store` itself is returned (nothing written). Returns `(features,
    record)`. Raises `ConfigError` for an unknown mode or when `out_dir` holds this control's results
    or features made another way.
    """
    out_dir = Path(out_dir)
    if mode == "smooth":
        config = SmoothConfig.like(shape, **(smooth or {}))
        module = TemporalSmoother(store.dim(), config)
        record = {k: v for k, v in asdict(config).items() if k != "sigma" or config.kernel == "gaussian"}
    elif mode == "untrained":
        if sola_features is None:
            raise ConfigError("the untrained control matches SoLa's departure: it needs the sola features")
        departure = 0.0 if sola_features is store else store_departure(store, sola_features)
        module, record = untrained_adapter(store, departure, shape, seed)
        record["matched_to"] = str(sola_features.path)
    else:
        raise ConfigError(f"mode {mode!r} is no control; choose one of {', '.join(CONTROLS)}")
    identity = mode == "untrained" and module.gate == 0.0
    record["digest"] = "identity" if identity else adapter_digest(module)
    target = out_dir / f"{mode}_features"
    record["features"] = str(store.path if identity else target)
    _check_previous(out_dir, mode, record)
    if identity:
        log(f"the {mode} control is the identity (SoLa's departure is 0): the original features as they are")
        return store, record
    log(f"writing the {mode} control's features in {target}")
    transform_store(module, store, target, progress=progress)
    return store.open_output(target), record


def _check_previous(out_dir: Path, mode: str, record: dict) -> None:
    """Refuse a control whose results or features in `out_dir` were made another way; then record this one."""
    path = out_dir / CONTROL_RECORD
    previous = read_json(path, {}, dict, (), f"delete {path}") if path.is_file() else {}
    made = previous.get(mode)
    done = any((out_dir / RESULTS).glob(f"{mode}_seed*.json")) or (out_dir / f"{mode}_features").is_dir()
    if done and (made or {}).get("digest") != record["digest"]:
        why = "another way (other SoLa features or smoothing settings)" if made else "before controls were recorded"
        raise ConfigError(f"{out_dir}: its {mode} features/results were made {why}; compare in a new --out, or "
                          f"delete {out_dir / f'{mode}_features'} and {out_dir / RESULTS}/{mode}_seed*.json")
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({**previous, mode: record}, indent=1))  # before any output it vouches for
