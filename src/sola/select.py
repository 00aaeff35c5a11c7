"""Checkpoint selection: probe every saved adapter of a run and mark the best as `best.safetensors`.

The reference's advice is to keep the checkpoint with the best linear probe. The default metric is
the converging probe's balanced accuracy (`lbfgs_balanced_accuracy`): the reference protocol's
accuracy (`sgd_accuracy`, also available) can sit at the majority-class rate on small sets, where
it cannot tell checkpoints apart.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from sola.atomic import atomic_write_bytes, atomic_write_text
from sola.errors import CheckpointError, ConfigError
from sola.probe import METRICS, collect_snippets, json_ready, probe_features

DEFAULT_METRIC = "lbfgs_balanced_accuracy"
SELECTABLE = tuple(f"{p}_{m}" for p in ("sgd", "lbfgs") for m in METRICS)
BEST_FILE = "best.safetensors"
TABLE_FILE = "select.json"
_EPOCH = re.compile(r"epoch_(\d+)\.safetensors$")


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """`(epoch, path)` of every `checkpoints/epoch_XXXX.safetensors` in a run, by epoch.

    Raises `CheckpointError` when the directory or its checkpoints are missing.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    found = []
    for path in (run_dir / "checkpoints").glob("epoch_*.safetensors"):
        match = _EPOCH.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    if not found:
        raise CheckpointError(
            f"{run_dir}: no checkpoints/epoch_XXXX.safetensors; is this a `sola train` run directory?"
        )
    return sorted(found)


def select_checkpoint(
    run_dir: str | os.PathLike,
    store,
    annotations,
    metric: str = DEFAULT_METRIC,
    seed: int = 0,
    progress: bool = False,
    log=None,
    device=None,
    **options,
) -> dict:
    """Probe the identity and every checkpoint; copy the best checkpoint to `RUN_DIR/best.safetensors`.

    `options` go to `sola.probe.collect_snippets` (subsets, boundary_k, grid). Writes
    `RUN_DIR/select.json` (the table) atomically and returns it:
    `{"metric", "best_epoch", "best_value", "rows": {"baseline": {...}, "epoch_0010": {...}}, ...}`.
    Ties go to the earliest epoch. Raises `ConfigError` for an unknown metric, `CheckpointError`
    for a missing or unreadable checkpoint.
    """
    from sola.adapter import load_adapter

    if metric not in SELECTABLE:
        raise ConfigError(f"unknown probe metric {metric!r}; choose one of {', '.join(SELECTABLE)}")
    run_dir = Path(run_dir)
    checkpoints = list_checkpoints(run_dir)
    data = collect_snippets(store, annotations, progress=progress, **options)
    rows = {"baseline": probe_features(data, None, seed, device)}
    for epoch, path in checkpoints:
        if log:
            log(f"probing {path.name}")
        adapter = load_adapter(path)
        if adapter.dim != store.dim():
            raise CheckpointError(
                f"{path}: adapter of dim {adapter.dim} does not fit features of dim {store.dim()}; "
                "select with the features the run was trained on"
            )
        rows[f"epoch_{epoch:04d}"] = probe_features(data, adapter, seed, device)
    best_epoch, best_path, best_value = None, None, -math.inf
    for epoch, path in checkpoints:
        value = rows[f"epoch_{epoch:04d}"][metric]
        if value > best_value:  # strict: ties keep the earlier epoch
            best_epoch, best_path, best_value = epoch, path, value
    if best_path is None:  # every value NaN (e.g. no snippet near a boundary)
        best_epoch, best_path = checkpoints[-1]
        best_value = rows[f"epoch_{best_epoch:04d}"][metric]
    atomic_write_bytes(run_dir / BEST_FILE, best_path.read_bytes())
    table = {
        "metric": metric,
        "best_epoch": best_epoch,
        "best_value": best_value,
        "best_checkpoint": str(best_path),
        "train_subset": data.train_subset,
        "val_subset": data.val_subset,
        "train_videos": len(data.train.video_ids),
        "val_videos": len(data.val.video_ids),
        "boundary_k": data.boundary_k,
        "seed": seed,
        "rows": rows,
    }
    atomic_write_text(run_dir / TABLE_FILE, json.dumps(json_ready(table), indent=1) + "\n")
    return table
