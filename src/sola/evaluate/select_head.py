"""Checkpoint selection by the head itself: a short proxy head judges every candidate on held-out videos.

The probe criterion (`sola.evaluate.select`, the reference's rule) keeps the probe safe, not the head (on the
synthetic benchmark, probe-selected adapters cost the head 3.1 avg mAP). With `select.criterion:
head`, each candidate (the identity, i.e. the original features, and every checkpoint of the run)
feeds the run's head config, cut to `select.head_epochs` epochs, trained on the head's training
subset minus a held-out share `data.holdout` of its videos (or on all of it, with `heldout_subset`)
and scored by average mAP on the held-out videos, over `select.seeds` seeds. Seed s of a candidate
is paired with seed s of the identity (same head initialisation and batch order). The identity wins
unless a candidate's mean paired gain has its 95% t-interval above `select.head_margin`; among those
that clear it, the largest mean gain wins, ties to the earlier epoch. The evaluation subset is never
read. Every (candidate, seed) score is saved in `RUN_DIR/select_head/` as it finishes, so an
interrupted selection resumes; a score is reused only for the same adapter, split, seed and proxy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

from sola.adapt.adapter import adapter_digest
from sola.core.atomic import atomic_write_bytes, atomic_write_text
from sola.core.errors import AnnotationError, ConfigError
from sola.core.runs import BEST, SELECTION, list_checkpoints
from sola.core.stats import format_difference, learned_nothing, paired_difference
from sola.data.annotations import Annotations, canonical_subset, match_ids
from sola.evaluate.probe import ProbeConfig, json_ready, probe_config, selection_subset, split_videos
from sola.evaluate.select import IDENTITY, _load_checked, _write_identity

SELECT_TRAIN = "selection-train"  # the proxy head's subsets in the relabelled annotations
SELECT_HELDOUT = "selection-heldout"
SCORES = "select_head"  # in RUN_DIR: one JSON per (candidate, seed), and the scratch features


def proxy_config(tal_config, head_epochs: int):
    """The head config cut to `head_epochs` epochs in all (0: unchanged), trained on the selection split.

    The warm-up keeps its share of the schedule (at least one epoch when the config has one).
    """
    train = tal_config.train
    total = train.warmup_epochs + train.epochs
    if head_epochs and head_epochs < total:
        warmup = min(head_epochs - 1, max(1 if train.warmup_epochs else 0,
                                          round(train.warmup_epochs * head_epochs / total)))
        train = dataclasses.replace(train, warmup_epochs=warmup, epochs=head_epochs - warmup)
    data = dataclasses.replace(tal_config.data, train_subset=SELECT_TRAIN, test_subset=SELECT_HELDOUT)
    return dataclasses.replace(tal_config, data=data, train=train).validate()


def selection_split(store, annotations: Annotations, subset: str | None, heldout_subset: str | None,
                    config: ProbeConfig, test_subset: str | None = None) -> tuple[Annotations, list[str], list[str], str, str]:
    """Annotations relabelled for the proxy head: `(annotations, train feature ids, held-out feature ids,
    subset, held-out subset name)`.

    The proxy trains on `subset` (default: training, else validation) minus a share `data.holdout`
    of its videos (seeded by `data.seed`), measured on those; with `heldout_subset`, it trains on all
    of `subset` and is measured on that subset. Raises `ConfigError` when the held-out subset is
    `test_subset` (the evaluation subset), `AnnotationError` when a part would be empty.
    """
    matched = match_ids(store.video_ids(), annotations.keys())
    by_annotation = {a: f for f, a in matched.pairs.items()}
    name = canonical_subset(subset) if subset else selection_subset(annotations, list(by_annotation))
    if test_subset and canonical_subset(test_subset) in (name, canonical_subset(heldout_subset or name)):
        raise ConfigError(f"selection on subset {heldout_subset or name!r}, the evaluation subset "
                          f"(data.test_subset); selection must never see it")
    chosen = sorted(v for v in by_annotation if canonical_subset(annotations[v].subset) == name)
    if heldout_subset:
        held_name = canonical_subset(heldout_subset)
        held = sorted(v for v in by_annotation if canonical_subset(annotations[v].subset) == held_name)
        if held_name == name or not held or not chosen:
            raise AnnotationError(f"held-out subset {heldout_subset!r} must be another subset than {name!r}, and "
                                  f"both need videos with features ({len(held)} and {len(chosen)} found)")
        train = chosen
    else:
        held_name = name
        train, held = split_videos(chosen, config.data.holdout, config.data.seed)
    relabelled = {v: dataclasses.replace(annotations[v], subset=SELECT_TRAIN) for v in train}
    relabelled.update({v: dataclasses.replace(annotations[v], subset=SELECT_HELDOUT) for v in held})
    source = getattr(annotations, "source", "")
    return (Annotations(relabelled, source=source), [by_annotation[v] for v in train],
            [by_annotation[v] for v in held], name, held_name)


def _score_key(adapter_id: str, proxy, annotations: Annotations, source: str, seed: int) -> str:
    """A fingerprint of everything a proxy score depends on (adapter, proxy config, split, the store it
    adapts, seed): a saved score is reused only when all of it is the same."""
    split = {v: annotations[v].subset for v in annotations}
    text = json.dumps([adapter_id, proxy.to_dict(), split, source, seed], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def proxy_scores(store, annotations: Annotations, proxy, seeds: int, adapter_id: str, cache: Path, log=None,
                 source: str | None = None) -> dict:
    """Average mAP of the proxy head on `store` for seeds 0..seeds-1, each saved in `cache` as it finishes.

    `adapter_id` ("identity" or the adapter's SHA-256) and `source` (the original store's resolved
    path; default `store`'s) key the saved scores. Returns `{"average_mAP": [per seed], "seconds":
    [per seed, 0 when reused]}`.
    """
    from sola.tal.experiment import run_experiment

    source = source or str(Path(store.path).resolve())
    values, seconds = [], []
    for seed in range(seeds):
        path = cache / f"{_score_key(adapter_id, proxy, annotations, source, seed)}.json"
        try:
            saved = json.loads(path.read_text())
            values.append(float(saved["average_mAP"]))
            seconds.append(0.0)
            continue
        except (OSError, ValueError, KeyError, TypeError):
            pass
        started = time.perf_counter()
        result = run_experiment(store, annotations, proxy, seed=seed, progress=False)
        seconds.append(time.perf_counter() - started)
        values.append(float(result["average_mAP"]))
        atomic_write_text(path, json.dumps({"adapter": adapter_id, "seed": seed, "average_mAP": values[-1],
                                            "mAP": result["mAP"], "seconds": seconds[-1]}))
        if log:
            log(f"  seed {seed}: proxy avg mAP {100 * values[-1]:.2f} ({seconds[-1]:.0f} s)")
    return {"average_mAP": values, "seconds": seconds}


def _candidate_scores(adapter, store, annotations, proxy, seeds: int, video_ids: list[str], scores: Path, log):
    """Proxy scores of one checkpoint: its features of the selection videos, written to a scratch store."""
    from sola.adapt.transform import transform_store

    digest = adapter_digest(adapter)
    source = str(Path(store.path).resolve())
    scratch = scores / f".features_{digest[:16]}"
    keys = [scores / f"{_score_key(digest, proxy, annotations, source, s)}.json" for s in range(seeds)]
    if all(key.is_file() for key in keys):
        return proxy_scores(store, annotations, proxy, seeds, digest, scores, log, source)  # all saved
    shutil.rmtree(scratch, ignore_errors=True)  # a scratch store left by an interrupted run
    try:
        transform_store(adapter, store, scratch, progress=False, video_ids=video_ids)
        return proxy_scores(store.open_output(scratch), annotations, proxy, seeds, digest, scores, log, source)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def decide(rows: dict[str, dict], margin: float) -> str:
    """The winning candidate's name: the identity unless a checkpoint's paired gain has its 95% interval
    above `margin` (then the largest mean gain; ties to the earlier epoch, i.e. the first in `rows`)."""
    winner, best = IDENTITY, None
    for name, row in rows.items():
        gain = row.get("gain")
        if name == IDENTITY or gain is None or not gain["n"] >= 2 or not gain["low"] > margin:
            continue  # NaN never passes
        if best is None or gain["mean"] > best:
            winner, best = name, gain["mean"]
    return winner


def head_select_checkpoint(
    run_dir: str | os.PathLike,
    store,
    annotations: Annotations,
    tal_config=None,
    config: ProbeConfig | None = None,
    subset: str | None = None,
    heldout_subset: str | None = None,
    log=None,
    cache_dir: str | os.PathLike | None = None,
) -> dict:
    """Judge the identity and every checkpoint of `run_dir` by a proxy head's held-out avg mAP; write
    the winner to `RUN_DIR/best.safetensors` and the table to `RUN_DIR/select.json` (atomically).

    `tal_config`: the head config (`sola.tal.config.TalConfig`; None: the THUMOS14 defaults), cut to
    `select.head_epochs` epochs; its `data.test_subset` is refused as the held-out subset. `config`
    (a `sola.evaluate.probe.ProbeConfig`) gives `select.seeds`, `select.head_margin`, `select.head_epochs`,
    `data.holdout` and `data.seed` (the split). `cache_dir`: where proxy scores are kept (default
    `RUN_DIR/select_head`; scores of the identity can be shared across runs on the same data).
    Returns the table (see `select.json`): per candidate the avg mAP per seed, the paired gain
    `{mean, std, n, low, high}` over the identity and whether it clears the margin; "best", "reason".
    Raises `CheckpointError` for missing or mismatched checkpoints, `ConfigError`/`AnnotationError`
    for a split that is empty or touches the evaluation subset.
    """
    from sola.tal.config import load_tal_config

    config = probe_config(config)
    tal_config = tal_config if tal_config is not None else load_tal_config(None)
    select = config.select
    run_dir = Path(run_dir)
    checkpoints = list_checkpoints(run_dir, required=True)
    relabelled, train_ids, held_ids, name, held_name = selection_split(
        store, annotations, subset, heldout_subset, config, tal_config.data.test_subset)
    proxy = proxy_config(tal_config, select.head_epochs)
    scores = Path(cache_dir) if cache_dir is not None else run_dir / SCORES
    scores.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"proxy head ({proxy.train.warmup_epochs + proxy.train.epochs} epochs, {select.seeds} seeds): "
            f"identity on {len(train_ids)} videos of {name}, measured on {len(held_ids)} of {held_name}")
    rows = {IDENTITY: proxy_scores(store, relabelled, proxy, select.seeds, IDENTITY, scores, log)}
    identity_path = None
    for epoch, path in checkpoints:
        adapter = _load_checked(path, store.dim())
        if adapter.gate == 0.0:  # output == input: the identity's scores, no head to train
            identity_path = path if epoch == 0 else identity_path
            row = {**rows[IDENTITY], "seconds": [0.0] * select.seeds, "identity": True}
        else:
            if log:
                log(f"proxy head on {path.name}")
            row = _candidate_scores(adapter, store, relabelled, proxy, select.seeds, [*train_ids, *held_ids],
                                    scores, log)
        row["gain"] = paired_difference(row["average_mAP"], rows[IDENTITY]["average_mAP"])
        row["passes"] = bool(row["gain"]["low"] > select.head_margin)
        row["checkpoint"], row["epoch"] = str(path), epoch
        rows[f"epoch_{epoch:04d}"] = row
    for row in rows.values():
        row["mean"] = sum(row["average_mAP"]) / len(row["average_mAP"])
    no_basis = learned_nothing({key: row["mean"] for key, row in rows.items()})
    best = IDENTITY if no_basis else decide(rows, select.head_margin)  # a proxy that learned nothing judges nothing
    table = _table(rows, best, identity_path, checkpoints, store, config, proxy, tal_config,
                   (name, held_name, train_ids, held_ids), no_basis)
    if best == IDENTITY:
        _write_identity(run_dir / BEST, identity_path, checkpoints[-1][1], store.dim())
    else:
        atomic_write_bytes(run_dir / BEST, Path(rows[best]["checkpoint"]).read_bytes())
    table = json_ready(table)
    atomic_write_text(run_dir / SELECTION, json.dumps(table, indent=1) + "\n")
    return table


def _table(rows, best, identity_path, checkpoints, store, config, proxy, tal_config, split, no_basis=None) -> dict:
    """`select.json` of the head criterion (the keys of the probe criterion's table where they apply)."""
    name, held_name, train_ids, held_ids = split
    select = config.select
    identity_value = rows[IDENTITY]["mean"]
    best_value = rows[best]["mean"]
    candidate_seconds = [sum(row["seconds"]) / len(row["seconds"]) for key, row in rows.items()
                         if key != IDENTITY and all(row["seconds"])]  # trained here, none reused
    table = {
        "criterion": "head",
        "metric": "proxy_head_average_mAP",
        "best": best,
        "best_epoch": 0 if best == IDENTITY else rows[best]["epoch"],
        "best_value": best_value,
        "identity_value": identity_value,
        "gain": best_value - identity_value,
        "margin": select.head_margin,
        "min_gain": select.head_margin,
        "identity_wins": best == IDENTITY,
        "best_checkpoint": (None if identity_path is None else str(identity_path)) if best == IDENTITY
        else rows[best]["checkpoint"],
        "identity_checkpoint": None if identity_path is None else str(identity_path),
        "checkpoints": [f"epoch_{epoch:04d}" for epoch, _ in checkpoints],
        "features": str(Path(store.path).resolve()),
        "subset": name,
        "train_subset": name,
        "val_subset": held_name,
        "holdout": None if held_name != name else config.data.holdout,
        "heldout_videos": held_ids,
        "train_videos": len(train_ids),
        "val_videos": len(held_ids),
        "seed": config.data.seed,
        "seeds": select.seeds,
        "head_epochs": proxy.train.warmup_epochs + proxy.train.epochs,
        "head_config": tal_config.to_dict(),
        "seconds_per_seed": (sum(candidate_seconds) / len(candidate_seconds)) if candidate_seconds else None,
        "config": config.to_dict(),
        "rows": rows,
        "no_basis": no_basis,
    }
    table["reason"] = head_selection_reason(table)
    table["message"] = head_selection_message(table)
    return table


def head_selection_reason(table: dict) -> str:
    """Why the winner won: the winner's (or the closest candidate's) paired gain against the rule."""
    if table.get("no_basis"):
        return (f"no basis to judge: the proxy {table['no_basis'].removeprefix('the ')}; the identity is kept for that "
                "reason (raise select.head_epochs or check the head config)")
    # the challengers: checkpoints that are not the identity itself (epoch 0 with gate 0 is)
    rows = {k: v for k, v in table["rows"].items() if k != IDENTITY and not v.get("identity")}
    rule = f"a gain whose 95% interval lies above {100 * table['margin']:+.1f} avg mAP"
    if not rows:
        return "no checkpoint other than the identity to judge"
    if table["identity_wins"]:
        closest = max(rows, key=lambda k: rows[k]["gain"]["low"] if rows[k]["gain"]["n"] >= 2 else float("-inf"))
        return (f"no checkpoint showed {rule}; closest: {closest} "
                f"{format_difference(rows[closest]['gain'])} over {table['seeds']} paired seeds")
    return f"{table['best']} showed {rule}: {format_difference(rows[table['best']]['gain'])} over {table['seeds']} paired seeds"


def head_selection_message(table: dict) -> str:
    """One plain line: which candidate won by the proxy head, why, and on what data."""
    where = (f"proxy head of {table['head_epochs']} epochs trained on {table['train_videos']} videos of "
             f"{table['train_subset']}, measured on {table['val_videos']} videos of {table['val_subset']}")
    if table.get("no_basis"):
        return f"identity kept: {table['reason']} ({where}); {BEST} is the identity"
    if table["identity_wins"]:
        return f"identity wins: {table['reason']} ({where}); {BEST} is the identity"
    return f"{table['best']} wins: {table['reason']} ({where}); {BEST} is {table['best']}"


def choose_checkpoint(run_dir, store, annotations: Annotations, config: ProbeConfig | None = None, tal_config=None,
                      subset: str | None = None, heldout_subset: str | None = None, progress: bool = False,
                      log=None, device=None) -> dict:
    """Select by `config.select.criterion`: "probe" (`sola.evaluate.select.select_checkpoint`, the reference's
    rule, the default) or "head" (`head_select_checkpoint` with the head config `tal_config`).

    Both write `RUN_DIR/best.safetensors` and `RUN_DIR/select.json` and return the table.
    """
    from sola.evaluate.select import select_checkpoint

    config = probe_config(config)
    if config.select.criterion == "head":
        return head_select_checkpoint(run_dir, store, annotations, tal_config, config, subset=subset,
                                      heldout_subset=heldout_subset, log=log)
    return select_checkpoint(run_dir, store, annotations, config, progress=progress, log=log, device=device,
                             subset=subset, heldout_subset=heldout_subset)


def format_head_table(table: dict) -> str:
    """The head criterion's table: avg mAP per seed of every candidate (%), the paired gain, pass or not."""
    seeds = table["seeds"]
    lines = ["| candidate | " + " | ".join(f"seed {s}" for s in range(seeds)) + " | mean | gain [95% CI] | passes |",
             "|---|" + "---|" * (seeds + 3)]
    for name, row in table["rows"].items():
        cells = [f"{100 * v:.2f}" for v in row["average_mAP"]] + [f"{100 * row['mean']:.2f}"]
        gain = row.get("gain")
        cells += ["—", "—"] if gain is None else [format_difference(gain, digits=2), "yes" if row["passes"] else "no"]
        lines.append(f"| {name}{' (best)' if name == table['best'] else ''} | " + " | ".join(cells) + " |")
    cost = table.get("seconds_per_seed")
    lines += ["", f"Proxy head: {table['head_epochs']} epochs, avg mAP on {table['val_videos']} held-out videos of "
              f"{table['val_subset']}; {table['seeds']} seeds paired with the identity"
              + (f"; {cost:.0f} s per candidate and seed" if cost else "") + "."]
    return "\n".join(lines)
