"""Checkpoint selection that cannot make things worse: the identity is a candidate, and it wins ties.

Candidates are the identity (epoch 0: the original features) and every
`checkpoints/epoch_XXXX.safetensors` of a run. A `checkpoints/epoch_0000.safetensors` whose gate
tanh(alpha) is 0 (the adapter at init) *is* the identity and is probed as such. Every candidate is
probed on a held-out part of ONE subset, the one the TAL head trains on (training, else validation
as for THUMOS14): the linear probe trains on the other videos of that subset
(`sola.evaluate.probe.collect_heldout_snippets`). The evaluation subset is never read. A checkpoint must do
strictly better than the identity (by more than `select.min_gain` of the `sola.evaluate.probe.ProbeConfig`)
to win; ties go to the identity, then to the earliest epoch. When the identity wins,
`best.safetensors` is an identity adapter (epoch 0's when it exists, else a fresh one with gate 0:
its output equals its input bit for bit).

The default `select.metric` is the converging probe's balanced accuracy (`lbfgs_balanced_accuracy`):
the reference protocol's accuracy (`sgd_accuracy`, also available) can sit at the majority-class
rate on small sets, where it cannot tell checkpoints apart.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch

from sola.adapt.adapter import SoLaAdapter, load_adapter, save_adapter
from sola.core.atomic import atomic_write_bytes, atomic_write_text
from sola.core.errors import CheckpointError
from sola.core.runs import BEST, IDENTITY, SELECTION, list_checkpoints
from sola.core.stats import PROBE_CHANCE_FLOOR
from sola.evaluate.probe import (ProbeConfig, collect_heldout_snippets, json_ready, probe_config, probe_features,
                                 subsample_summary)


def identity_adapter(like):
    """A `SoLaAdapter` of the architecture of `like` with gate tanh(0) = 0: an exact identity.

    Its weights are a seeded fresh initialisation (the global random state is left alone), so the
    file it is saved to is the same every time.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        adapter = SoLaAdapter(**like.shape)
    with torch.no_grad():
        adapter.alpha.zero_()
    return adapter.eval()


def select_checkpoint(
    run_dir: str | os.PathLike,
    store,
    annotations,
    config: ProbeConfig | None = None,
    seed: int | None = None,
    progress: bool = False,
    log=None,
    device=None,
    subset: str | None = None,
    heldout_subset: str | None = None,
) -> dict:
    """Probe the identity and every checkpoint on a held-out part of `subset`; write the winner to
    `RUN_DIR/best.safetensors` and the table to `RUN_DIR/select.json` (both atomically).

    `subset`: the subset the TAL head trains on (default: training, else validation); a share
    `data.holdout` of its videos (by a permutation seeded with the seed) measure the probe, the rest
    train it. A checkpoint wins only with `select.metric` > identity + `select.min_gain`; ties go to
    the identity, then to the earliest epoch; NaN never wins. `config` (a `sola.evaluate.probe.ProbeConfig`,
    None: the defaults) also gives the probe's snippet labels and both protocols; `seed`, when given,
    replaces `data.seed`. `heldout_subset`: measure on that subset instead of a held-out part of
    `subset` (the probe then trains on all of `subset`): for data whose videos share content within
    a subset, such as `sola splice`'s ("holdout").

    Returns the table: `{"criterion" ("probe"), "metric", "best" ("identity" or "epoch_0040"), "best_epoch" (0 for the
    identity), "best_value", "identity_value", "gain", "min_gain", "identity_wins",
    "best_checkpoint" (path, None for an identity without epoch 0), "identity_checkpoint",
    "checkpoints", "features", "subset", "holdout", "heldout_videos", "train_videos", "subsample", "val_videos",
    "train_subset", "val_subset", "boundary_k", "seed", "config", "rows": {"identity": {...},
    "epoch_0010": {...}, ...}, "message"}`. Raises `ConfigError` for an unknown metric or a bad
    `min_gain`/`holdout` (naming the key), `CheckpointError` for a missing, unreadable or mismatched
    checkpoint, `AnnotationError` when the subset has fewer than 2 videos with features.
    """
    config = probe_config(config, seed)
    metric, min_gain = config.select.metric, config.select.min_gain
    run_dir = Path(run_dir)
    checkpoints = list_checkpoints(run_dir, required=True)
    data = collect_heldout_snippets(store, annotations, subset, config, progress=progress,
                                    heldout_subset=heldout_subset)
    identity_path = None
    if checkpoints[0][0] == 0 and _load_checked(checkpoints[0][1], store.dim()).gate == 0.0:
        identity_path = checkpoints[0][1]  # the adapter at init: the identity itself
    candidates = [(epoch, path) for epoch, path in checkpoints if path != identity_path]
    rows, winner = _probe_candidates(data, candidates, store.dim(), config, device, log)
    no_basis = probe_at_chance(rows, metric)
    if no_basis:
        winner = None  # a probe at chance cannot tell candidates apart: keep the original features
    identity_value = rows[IDENTITY][metric]
    if winner is not None:
        best, best_epoch, best_path, best_value = winner
        atomic_write_bytes(run_dir / BEST, best_path.read_bytes())
    else:
        best, best_epoch, best_path, best_value = IDENTITY, 0, identity_path, identity_value
        _write_identity(run_dir / BEST, identity_path, checkpoints[-1][1], store.dim())
    table = {
        "criterion": "probe", "metric": metric, "best": best, "best_epoch": best_epoch, "best_value": best_value,
        "identity_value": identity_value, "gain": best_value - identity_value, "min_gain": min_gain,
        "identity_wins": winner is None, "best_checkpoint": None if best_path is None else str(best_path),
        "identity_checkpoint": None if identity_path is None else str(identity_path),
        "checkpoints": [f"epoch_{epoch:04d}" for epoch, _ in checkpoints],
        "features": str(Path(store.path).resolve()), "subset": data.train_subset, "holdout": config.data.holdout,
        "heldout_videos": list(data.val.video_ids), "train_videos": len(data.train.video_ids),
        "subsample": subsample_summary(data), "val_videos": len(data.val.video_ids),
        "train_subset": data.train_subset, "val_subset": data.val_subset, "boundary_k": data.boundary_k,
        "seed": config.data.seed, "config": config.to_dict(), "rows": rows, "no_basis": no_basis,
    }
    table["message"] = selection_message(table)
    table = json_ready(table)
    atomic_write_text(run_dir / SELECTION, json.dumps(table, indent=1) + "\n")
    return table


def probe_at_chance(rows: dict[str, dict], metric: str) -> str | None:
    """Why the probe gives no basis to choose, when every candidate's balanced accuracy stays below
    `sola.core.stats.PROBE_CHANCE_FLOOR` (chance is 0.5), else None. Other metrics have no fixed chance level."""
    if not metric.endswith("balanced_accuracy"):
        return None
    values = [row[metric] for row in rows.values() if row.get(metric) is not None and not math.isnan(row[metric])]
    if values and max(values) >= PROBE_CHANCE_FLOOR:
        return None
    best = f"at most {max(values):.3f}" if values else "not a number"
    return f"the probe learned nothing ({metric} {best} for every candidate; chance is 0.500)"


def _load_checked(path: Path, dim: int):
    """The adapter saved at `path`; `CheckpointError` when it does not fit features of `dim`."""
    adapter = load_adapter(path)
    if adapter.dim != dim:
        raise CheckpointError(
            f"{path}: adapter of dim {adapter.dim} does not fit features of dim {dim}; "
            "select with the features the run was trained on"
        )
    return adapter


def _probe_candidates(data, candidates: list[tuple[int, Path]], dim: int, config: ProbeConfig, device, log):
    """Probe rows of the identity and every candidate checkpoint, and the winner `(name, epoch, path,
    value)` or None: strictly above identity + `select.min_gain` (NaN never wins; ties go to the
    identity, then to the earlier epoch)."""
    metric = config.select.metric
    if log:
        log("probing the identity (the original features)")
    rows = {IDENTITY: probe_features(data, None, device=device, config=config)}
    threshold = rows[IDENTITY][metric] + config.select.min_gain
    winner = None
    for epoch, path in candidates:
        if log:
            log(f"probing {path.name}")
        name = f"epoch_{epoch:04d}"
        rows[name] = probe_features(data, _load_checked(path, dim), device=device, config=config)
        value = rows[name][metric]
        if value > threshold and (winner is None or value > winner[3]):
            winner = (name, epoch, path, value)
    return rows, winner


def _write_identity(best: Path, identity_path: Path | None, shaped_like: Path, dim: int) -> None:
    """Write the identity as `best`: the saved epoch-0 adapter, else an identity of the run's shape."""
    if identity_path is not None:
        atomic_write_bytes(best, identity_path.read_bytes())
    else:
        save_adapter(identity_adapter(_load_checked(shaped_like, dim)), best, {"epoch": 0, "identity": True})


def selection_message(table: dict) -> str:
    """One plain line: which candidate won, by how much, on what data."""
    if table.get("val_subset", table["subset"]) != table["subset"]:
        where = f"probe trained on {table['subset']}, measured on {table['val_videos']} videos of {table['val_subset']}"
    else:
        where = f"held-out {table['val_videos']} videos of subset {table['subset']}"
    metric = table["metric"]
    if table.get("no_basis"):
        return (f"identity kept: no basis to judge, {table['no_basis']} ({where}); {BEST} is the identity; "
                "check the annotations and the probe config")
    if table["identity_wins"]:
        margin = f" by more than {table['min_gain']:g}" if table["min_gain"] else ""
        return (f"identity wins: no checkpoint beats the original features on {metric}{margin} "
                f"(identity {_value(table['identity_value'])}; {where}); {BEST} is the identity")
    return (f"{table['best']} wins: {metric} {_value(table['best_value'])} vs identity "
            f"{_value(table['identity_value'])} ({where}); {BEST} is {table['best']}")


def _value(value) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
