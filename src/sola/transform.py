"""Apply a fitted adapter to whole videos and whole stores, format-preserving and resumable."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sola.adapter import SoLaAdapter
from sola.distributed import barrier, setup_distributed
from sola.errors import ConfigError, StoreError
from sola.stores import FeatureStore
from sola.stores.checks import apply_nan_policy


@torch.inference_mode()
def apply_adapter(
    adapter: SoLaAdapter,
    features: np.ndarray,
    chunk_size: int = 8192,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Adapt one whole video `(T, C)` -> `(T, C)` in its own dtype.

    The residual g(f) is computed in float32 in chunks of `chunk_size` snippets, each with the
    adapter's receptive radius of real context on both sides, so chunking equals one pass (up to
    float rounding: conv kernels may sum in another order for another length). The
    sum f + tanh(alpha) g(f) is taken at the input's precision: an untrained adapter returns the
    input bit for bit, whatever its dtype.
    """
    check_chunk_size(chunk_size)
    if features.ndim != 2 or features.shape[1] != adapter.dim:
        raise StoreError(
            f"features of shape {tuple(features.shape)} do not fit an adapter of dim {adapter.dim}; "
            "use the adapter fitted on this feature type"
        )
    device = torch.device(device)
    adapter = adapter.to(device).eval()
    inputs = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)  # (T, C)
    length, radius = inputs.shape[0], adapter.radius
    residual = torch.empty_like(inputs)  # (T, C)
    for first in range(0, length, chunk_size):
        last = min(first + chunk_size, length)
        lo, hi = max(first - radius, 0), min(last + radius, length)
        chunk = adapter.residual(inputs[lo:hi][None])[0]  # (hi - lo, C)
        residual[first:last] = chunk[first - lo : last - lo]
    gate = float(torch.tanh(adapter.alpha))
    wide = np.promote_types(features.dtype, np.float32)
    out = features.astype(wide, copy=False) + gate * residual.cpu().numpy().astype(wide, copy=False)
    return out.astype(features.dtype, copy=False)


def check_chunk_size(chunk_size: int) -> None:
    """Raise `ConfigError` unless `chunk_size` is a positive number of snippets."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError(f"chunk size must be a positive number of snippets (--chunk-size), got {chunk_size!r}")


def transform_store(
    adapter: SoLaAdapter,
    store: FeatureStore,
    out: str | os.PathLike,
    chunk_size: int = 8192,
    device: str = "auto",
    progress: bool = True,
    nan_policy: str = "error",
) -> dict:
    """Write `adapter(store)` to a new store of the same layout at `out`; rerunning skips done videos.

    Under `torchrun`, videos are sharded across ranks; the main rank finishes the store at the end.
    `nan_policy` ("error", "zero", "drop-video") decides what happens to videos with NaN/Inf.
    Returns counts: {"videos", "written", "skipped", "dropped", "seconds", "snippets"}. Raises
    `StoreError` when `out` is the input store (inputs are never modified) or a video is bad.
    """
    check_chunk_size(chunk_size)
    out = Path(out)
    if out.resolve() == store.path.resolve():
        raise StoreError(f"--out {out} is the input store; choose a new directory (inputs are never modified)")
    context = setup_distributed(device)
    writer = store.writer(out)
    ids = store.video_ids()
    if not ids:
        raise StoreError(f"feature store {store.path} holds no videos")
    mine = ids[context.rank :: context.world_size]  # every layout writes videos one by one, atomically
    started = time.perf_counter()
    written = skipped = dropped = snippets = 0
    bar = tqdm(mine, desc="transform", unit="video", disable=(not progress or not context.is_main) or None)
    for video_id in bar:
        if writer.has(video_id):
            skipped += 1
            continue
        features = apply_nan_policy(store.read(video_id), nan_policy, f"video {video_id!r} in {store.path}")
        if features is None:
            dropped += 1
            continue
        writer.write(video_id, apply_adapter(adapter, features, chunk_size, context.device))
        written += 1
        snippets += features.shape[0]
    barrier(context)
    if context.is_main:  # after every rank's last video: one process finishes the store
        writer.close()
    return {
        "videos": len(ids),
        "written": written,
        "skipped": skipped,
        "dropped": dropped,
        "snippets": snippets,
        "seconds": round(time.perf_counter() - started, 3),
        "out": str(out),
    }
