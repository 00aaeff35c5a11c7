"""The unsupervised fit: Similarity Matching on random windows, checkpoints, resume, DDP.

Run directory layout:
    config.yaml                  the full config used
    run.json                     which feature store it was fitted on (path, layout, options)
    metrics.jsonl                one JSON line per epoch: epoch, loss, gate = tanh(alpha), departure
                                 (mean ||tanh(alpha) g(f)|| / ||f|| on the epoch's last batch), seconds, steps,
                                 lr, health (feature-health figures of a fixed batch, see sola.adapt.health),
                                 constant_map (the loss sits at a constant map's), stopped (why a guard fired)
    adapter.safetensors          the latest adapter (weights only); after a guard fired, the last healthy one
    checkpoints/epoch_XXXX.safetensors   the identity (epoch 0) and an adapter every `checkpoint_every` epochs
    state.safetensors            model + projector + optimiser, to resume
    window_cache/                while fitting a layout without random access (csv, pickle, ...):
                                 its videos as float32 .npy, read row by row; removed at the end
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from sola.adapt.adapter import SoLaAdapter, save_adapter
from sola.adapt.health import (FitDiverged, FitGuard, constant_map_loss, feature_health, health_windows,
                               nonfinite_figures, nonfinite_reason, spread_figures)
from sola.adapt.matching import SimilarityMatching
from sola.adapt.sampling import WindowSource, epoch_plan, largest_magnitude, open_window_source, prefetch
from sola.adapt.schedule import lr_factor, steps_per_epoch, total_epochs, total_steps
from sola.core.config import SoLaConfig, changed_config_keys, load_config, require_fit_memory, save_config
from sola.core.distributed import (DistributedContext, barrier, mean_across_ranks, rank_batch, setup_distributed,
                                   sum_across_ranks)
from sola.core.errors import CheckpointError, ConfigError
from sola.core.paths import check_outputs
from sola.core.runs import (ADAPTER, ADAPTER_METRICS, ADAPTER_RUN, ADAPTER_SECTIONS, CONFIG, RECORD, STATE,
                            WINDOW_CACHE, check_run, checkpoint_path, load_state, read_metrics, read_record,
                            run_config_file, save_state, store_record, write_metrics, write_record)
from sola.data.stores import FeatureStore

STATE_FORMAT = "sola-training-state"
METRICS_FIX = "repair or delete that line (or the whole file, losing the log), then rerun with --resume"


RESUMABLE = ("fit.epochs", "fit.device")  # what a resumed fit may change
NEW_RUN_FIX = "start a new run with another --out"


def load_run_config(run_dir: str | Path, epochs: int | None = None) -> SoLaConfig:
    """The config of an existing run (to resume it), optionally with more or fewer epochs."""
    check_run(run_dir, ADAPTER_RUN)
    return load_config(run_config_file(run_dir, ADAPTER_SECTIONS, NEW_RUN_FIX), {"fit.epochs": epochs})


def resume_config(run_dir: str | Path, config_file: str | Path | None = None,
                  overrides: dict | None = None) -> SoLaConfig:
    """The config a resumed fit continues with: the run's `config.yaml` under `overrides`.

    Resuming with the command that started the run (its `--config` and flags, `--resume` added) is
    accepted: only values that differ from the run's are refused, except `RESUMABLE` (epochs, device).
    A run with no finished epoch (killed before one, or never started) simply starts, with `config_file`
    and `overrides`. Raises `ConfigError` naming the changed keys, `CheckpointError` for a run folder
    of another kind or an unreadable `config.yaml`.
    """
    run_dir = check_run(run_dir, ADAPTER_RUN, allow_new=True)
    if not (run_dir / STATE).exists() and not (run_dir / CONFIG).exists():
        return load_config(config_file, overrides)
    stored = run_config_file(run_dir, ADAPTER_SECTIONS, NEW_RUN_FIX)
    saved = load_config(stored)
    requested = load_config(config_file if config_file is not None else stored, overrides)
    old, new = saved.to_dict(), requested.to_dict()
    changed = [key for key in changed_config_keys(old, new) if key not in RESUMABLE]
    if changed:
        section, _, name = changed[0].partition(".")
        first = f"{old.get(section, {}).get(name)!r} -> {new.get(section, {}).get(name)!r}"
        raise ConfigError(f"--resume {run_dir}: this command changes {', '.join(changed)} ({first} for the first); "
                          f"a resumed run keeps its own {CONFIG}, only --epochs and --device may change: drop those "
                          "values, or start a new run with another --out")
    return requested


def _open_run_dir(run_dir, store: FeatureStore, resume: bool) -> Path | None:
    """`run_dir` as a Path, checked against `store` (None: no run directory; resuming needs one)."""
    if run_dir is None:
        if resume:
            raise CheckpointError("resume needs a run directory")
        return None
    check_run_dir(Path(run_dir), store, resume)
    return Path(run_dir)


def _note_constant_map(log, epoch: int, loss: float, constant_loss: float) -> bool:
    log(f"note: epoch {epoch}: the loss {loss:.4f} sits at the loss of a constant similarity map "
        f"({constant_loss:.4f}); the objective is learning little here")
    return True


def fit_adapter(
    store: FeatureStore,
    config: SoLaConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> SoLaAdapter:
    """Fit a SoLa adapter on the unlabeled features of `store`; return it (on the CPU, eval mode).

    With `run_dir`, writes config, metrics, checkpoints (the identity at epoch 0 included) and a
    resumable state there; `resume=True` continues from `run_dir/state.safetensors` (bitwise equal
    to an uninterrupted run on the CPU). Under `torchrun`, each rank trains on a disjoint shard of
    videos with DDP. After every epoch the guardrails (`sola.adapt.health`) check the loss and the
    feature health of a fixed batch; a fit that diverged or collapsed raises `FitDiverged`, with
    `run_dir/adapter.safetensors` holding the last healthy adapter.
    Raises `ConfigError`, `StoreError` or `CheckpointError` with the fix in the message.
    """
    config.validate()
    require_fit_memory(config, store.dim())  # before anything is allocated or written
    fit, matching = config.fit, config.matching
    context = setup_distributed(fit.device)
    local_batch = rank_batch("fit.batch_size", fit.batch_size, context)
    run_dir = _open_run_dir(run_dir, store, resume)
    cache_dir = run_dir / WINDOW_CACHE if run_dir is not None else None
    data = open_window_source(store, matching.window, fit.nan_policy, cache_dir)
    torch.manual_seed(fit.seed)
    adapter = SoLaAdapter.from_config(data.dim, config.adapter)
    model = SimilarityMatching(adapter, matching).to(context.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=fit.lr, weight_decay=fit.weight_decay)
    start_epoch = _resume(run_dir, model, optimizer) if resume else 0  # 0: none finished, the run starts
    trainer = DistributedDataParallel(model) if context.enabled else model
    per_epoch = steps_per_epoch(len(data.video_ids), fit.windows_per_video, context.world_size, local_batch)
    budget, epochs = total_steps(fit, per_epoch), total_epochs(fit, per_epoch)
    records = [r for r in read_metrics(run_dir, ADAPTER_METRICS, METRICS_FIX)
               if r["epoch"] <= start_epoch] if resume else []
    writes = context.is_main and run_dir is not None  # rank 0 writes the run directory
    if writes:
        _start_run_dir(run_dir, store, config, records, adapter if start_epoch == 0 else None)
    if context.is_main:
        if resume and start_epoch == 0:
            log(f"{run_dir}: no finished epoch to resume; starting the run")
        _log_start(data, matching, context, per_epoch, budget, epochs, log)
    health_at = health_windows(data.lengths, matching.window, fit.health_windows, fit.seed)
    health_batch = torch.from_numpy(data.batch(*health_at, matching.window)).to(context.device)
    original = spread_figures(health_batch)
    guard = FitGuard(fit, constant_map_loss(model.target, matching.clamp_eps))
    healthy, warned = (_adapter_state(adapter), start_epoch), False
    bar = tqdm(range(start_epoch, epochs), desc="fit", unit="epoch",
               disable=(not progress or not context.is_main) or None)
    for epoch in bar:
        started = time.perf_counter()
        loss, steps, windows, odd = _train_epoch(trainer, optimizer, data, config, epoch, context, local_batch,
                                                 epoch * per_epoch, budget)
        loss = mean_across_ranks(loss, context)
        health = feature_health(adapter, health_batch, original)
        done = epoch + 1
        record = {
            "epoch": done, "loss": loss, "gate": adapter.gate,
            "departure": mean_across_ranks(float(model.departure), context),
            "seconds": round(time.perf_counter() - started, 4), "steps": steps,
            "lr": optimizer.param_groups[0]["lr"], "windows": windows * context.world_size,
            "videos": len(data.video_ids), "skipped_videos": len(data.skipped), "dropped_videos": len(data.dropped),
            "health": health, "constant_map": guard.at_constant_map(loss),
        }
        reason = _nonfinite(record, odd, adapter, health_batch, health_at[0], data, fit, context)
        reason = reason or guard.check(loss, health)
        if reason:
            record["stopped"] = reason
        bar.set_postfix(loss=f"{loss:.4f}", gate=f"{adapter.gate:+.4f}", departure=f"{record['departure']:.3f}")
        if context.is_main and record["constant_map"] and not warned:
            warned = _note_constant_map(log, done, loss, guard.constant_loss)
        if writes:
            records.append(record)
            write_metrics(run_dir, records)
        if reason is not None:
            _stop_unhealthy(adapter, healthy, run_dir, context, done, reason)
        if writes:
            _save_epoch(run_dir, model, optimizer, done, done % fit.checkpoint_every == 0 or done == epochs)
        healthy = _adapter_state(adapter), done
        barrier(context)
    if writes and start_epoch >= epochs:
        log(f"{run_dir} already has {start_epoch} epochs (>= {epochs}); nothing to do")
    if context.is_main and cache_dir is not None:
        shutil.rmtree(cache_dir, ignore_errors=True)  # derived data; a killed run keeps it for --resume
    return adapter.cpu().eval()


def _resume(run_dir: Path, model: SimilarityMatching, optimizer: torch.optim.Optimizer) -> int:
    """Restore the model and optimiser of a run; return the epochs it has done (0 for a run with no finished
    epoch: no state and no metrics yet)."""
    if not (run_dir / STATE).exists() and not read_metrics(run_dir, ADAPTER_METRICS, METRICS_FIX):
        return 0
    info, _ = load_state(run_dir / STATE, STATE_FORMAT, {"model": model}, optimizer,
                         "start a new run without resuming")
    return int(info["epoch"])


def _save_epoch(run_dir: Path, model: SimilarityMatching, optimizer: torch.optim.Optimizer, done: int,
                checkpoint: bool) -> None:
    """After epoch `done`: the adapter (and its checkpoint when `checkpoint`), then the resumable state."""
    if checkpoint:
        save_adapter(model.adapter, checkpoint_path(run_dir, done), {"epoch": done})
        save_adapter(model.adapter, run_dir / ADAPTER, {"epoch": done})
    save_state(run_dir / STATE, STATE_FORMAT, {"model": model}, optimizer, {"epoch": done})


def check_run_dir(run_dir: Path, store, resumed: bool) -> None:
    """Refuse a run directory inside the input store, or resuming a run on other features than its own.

    Raises `ConfigError` or `CheckpointError` naming the fix.
    """
    check_run(run_dir, ADAPTER_RUN, allow_new=True)
    if not resumed and (run_dir / STATE).exists():
        raise CheckpointError(f"{run_dir} already holds a training run; pass --resume to continue it or choose another --out")
    check_outputs({"--out": run_dir}, {"the input store": store.path})  # not it, not inside it
    fitted = read_record(run_dir) if resumed else None
    if fitted is not None:
        current = store_record(store)
        if any(fitted.get(key) != value for key, value in current.items()):
            raise CheckpointError(
                f"--resume {run_dir}: the run was fitted on {fitted.get('features')} (layout {fitted.get('layout')}, "
                f"options {fitted.get('options')}, see {run_dir / RECORD}), not on {store.path}; resume with those features, "
                "or start a new run with --out"
            )


def _start_run_dir(run_dir: Path, store: FeatureStore, config: SoLaConfig, records: list[dict],
                   identity: SoLaAdapter | None) -> None:
    """Write config, metrics so far, run.json and (for a new run) the identity as epoch 0."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir / CONFIG)
    write_metrics(run_dir, records)
    write_record(run_dir, store)
    if identity is not None:  # tanh(0) = 0: exactly the original features, a candidate for selection
        save_adapter(identity, checkpoint_path(run_dir, 0), {"epoch": 0})


def _log_start(data, matching, context, per_epoch: int, budget: int, epochs: int, log) -> None:
    if data.skipped:
        log(f"skipped {len(data.skipped)} video(s) shorter than {matching.window} snippets")
    if data.dropped:
        log(f"dropped {len(data.dropped)} video(s) with NaN/Inf values (nan_policy=drop-video)")
    log(
        f"fitting on {len(data.video_ids)} videos of dim {data.dim} "
        f"({len(data.skipped)} skipped), {context.world_size} process(es) on {context.device}: "
        f"{budget} steps, {epochs} epochs of {per_epoch}"
    )


def _nonfinite(record: dict, odd: list[int], adapter: SoLaAdapter, health_batch: torch.Tensor,
               health_videos, data: WindowSource, fit, context: DistributedContext) -> str | None:
    """Why the fit stops on a non-finite figure (any number of the epoch's record, a training window's
    departure, the adapted health windows), naming the videos whose windows gave it; None when all are finite.

    `odd`: indices (into `data`) of this rank's videos whose training windows had a NaN/Inf departure.
    The decision is the same on every rank (they stop together).
    """
    figures = nonfinite_figures(record)
    if odd and "departure" not in figures:
        figures.append("departure")
    stop = bool(figures) or not record["health"].get("finite", False)
    if sum_across_ranks(float(stop), context) == 0:
        return None
    weights_finite = all(bool(torch.isfinite(p).all()) for p in adapter.parameters())
    suspects = set(odd)
    if not record["health"].get("finite", False) and weights_finite:
        with torch.no_grad():
            adapted = adapter.eval()(health_batch)  # (B, L, C)
        adapter.train()
        bad = (~torch.isfinite(adapted).flatten(1).all(dim=1)).cpu().numpy()
        suspects |= {int(v) for v in np.asarray(health_videos)[bad]}
    videos = sorted(suspects)
    largest = max((largest_magnitude(data.sources[v]) for v in videos[:5]), default=0.0)
    fix = f"lower fit.lr (now {fit.lr:g}; try {fit.lr / 10:g}) or shorten the schedule"
    return nonfinite_reason(figures, weights_finite, [data.video_ids[v] for v in videos], largest, fix)


def _adapter_state(adapter: SoLaAdapter) -> dict[str, torch.Tensor]:
    return {name: t.detach().cpu().clone() for name, t in adapter.state_dict().items()}


def _stop_unhealthy(adapter: SoLaAdapter, healthy: tuple[dict, int], run_dir: Path | None,
                    context: DistributedContext, epoch: int, reason: str) -> None:
    """Put the last healthy weights back (and in `run_dir/adapter.safetensors`), then raise `FitDiverged`."""
    state, healthy_epoch = healthy
    adapter.load_state_dict(state)
    where = ""
    if run_dir is not None:
        if context.is_main:
            save_adapter(adapter, run_dir / ADAPTER, {"epoch": healthy_epoch, "stopped_at": epoch})
        where = f"; {run_dir}/{ADAPTER} is the last healthy adapter (epoch {healthy_epoch})"
    barrier(context)
    raise FitDiverged(f"fit stopped at epoch {epoch}: {reason}{where}")


def _train_epoch(
    trainer: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    data: WindowSource,
    config: SoLaConfig,
    epoch: int,
    context: DistributedContext,
    local_batch: int,
    first_step: int,
    budget: int,
) -> tuple[float, int, int, list[int]]:
    """One epoch of Similarity Matching, stopping at step `budget`; returns (mean loss, steps, windows, the
    indices of the videos whose windows had a non-finite departure)."""
    fit = config.fit
    trainer.train()
    videos, starts = epoch_plan(
        data.lengths,
        config.matching.window,
        fit.windows_per_video,
        fit.seed,
        epoch,
        context.rank,
        context.world_size,
    )
    total = torch.zeros((), dtype=torch.float64, device=context.device)
    departures = []  # (B,) per step, kept on the device: no sync inside the loop
    model = getattr(trainer, "module", trainer)
    steps = windows = 0
    count = min(-(-len(videos) // local_batch), max(budget - first_step, 0))
    pin = context.device.type == "cuda"

    def read(index: int) -> torch.Tensor:  # in the prefetch thread: (B, L, C) float32
        rows = slice(index * local_batch, (index + 1) * local_batch)
        batch = torch.from_numpy(data.batch(videos[rows], starts[rows], config.matching.window))
        return batch.pin_memory() if pin else batch

    # No host sync inside the loop: on a GPU the next batches are read while the last step runs.
    for batch in prefetch(read, count, fit.prefetch):
        step = first_step + steps
        for group in optimizer.param_groups:
            group["lr"] = fit.lr * lr_factor(step, budget, fit.warmup_steps, fit.schedule)
        loss = trainer(batch.to(context.device, non_blocking=True))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.detach()
        departures.append(model.departures)
        steps += 1
        windows += len(batch)
    bad = (~torch.isfinite(torch.cat(departures))).nonzero().flatten().cpu().numpy() if departures else []
    odd = sorted({int(v) for v in videos[bad]})  # windows are taken from `videos` in order
    return float(total) / max(steps, 1), steps, windows, odd
