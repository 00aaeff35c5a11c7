"""Apply a fitted adapter to whole videos and whole stores, format-preserving and resumable.

An output store records what produced it in a small JSON file (`PROVENANCE`): the adapter's
SHA-256 (architecture and weights), the input store (resolved path, layout, options) and the
settings that change the values (`nan_policy`, `chunk_size`). Directory layouts keep it inside the
output directory (`OUT/sola_transform.json`; no layout reads `.json` files as videos); one-file
layouts (HDF5, one pickle) keep it beside the file (`OUT.h5.sola_transform.json`), as their file
format has no place for it that every reader ignores. A rerun resumes only when the record
matches; an output of another adapter, input or setting, or one without a record (copies or links
of the inputs, an older run), is refused rather than silently reused or mixed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from sola.adapt.adapter import SoLaAdapter, adapter_digest
from sola.core.atomic import atomic_write_text, json_text
from sola.core.distributed import barrier, setup_distributed, sum_across_ranks
from sola.core.errors import CheckpointError, ConfigError, StoreError
from sola.core.memory import HeapTrim, require_memory
from sola.core.paths import check_outputs
from sola.core.runs import read_json
from sola.data.stores import FeatureStore, StoreWriter
from sola.data.stores.base import PartsWriter
from sola.data.stores.checks import SQUARE_LIMIT, apply_nan_policy, count_huge, huge_values_hint

PROVENANCE = "sola_transform.json"
PROVENANCE_FORMAT = "sola-transform-1"


@torch.inference_mode()
def apply_adapter(
    adapter: SoLaAdapter,
    features: np.ndarray,
    chunk_size: int = 8192,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Adapt one whole video `(T, C)` -> `(T, C)` in its own dtype.

    `adapter`: a `SoLaAdapter` or a module with its interface (`dim`, `radius`, `gate`, `residual`,
    `shape`), such as the smoothing control `sola.adapt.controls.TemporalSmoother`.
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
    residual = chunked_residual(adapter, inputs, chunk_size)  # (T, C)
    gate = adapter.gate
    wide = np.promote_types(features.dtype, np.float32)
    out = features.astype(wide, copy=False) + gate * residual.cpu().numpy().astype(wide, copy=False)
    return out.astype(features.dtype, copy=False)


@torch.inference_mode()
def chunked_residual(adapter: SoLaAdapter, inputs: torch.Tensor, chunk_size: int = 8192) -> torch.Tensor:
    """`adapter.residual` of one whole video `(T, C)` float32 -> `(T, C)`, in chunks of `chunk_size` snippets,
    each with the adapter's receptive radius of real context on both sides (so chunking equals one pass)."""
    length, radius = inputs.shape[0], adapter.radius
    residual = torch.empty_like(inputs)  # (T, C)
    for first in range(0, length, chunk_size):
        last = min(first + chunk_size, length)
        lo, hi = max(first - radius, 0), min(last + radius, length)
        chunk = adapter.residual(inputs[lo:hi][None])[0]  # (hi - lo, C)
        residual[first:last] = chunk[first - lo : last - lo]
    return residual


def check_chunk_size(chunk_size: int) -> None:
    """Raise `ConfigError` unless `chunk_size` is a positive number of snippets."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError(f"chunk size must be a positive number of snippets (--chunk-size), got {chunk_size!r}")


def is_identity(adapter) -> bool:
    """Whether `adapter`'s output equals its input bit for bit (`apply_adapter`): a gate tanh(alpha) of 0 (an
    adapter at init, the `best.safetensors` of a run whose selection kept the identity), or a smoothing of one tap."""
    one_tap = getattr(adapter, "shape", {}).get("control") == "smooth" and adapter.kernel_size == 1
    return adapter.gate == 0.0 or one_tap


def transform_store(
    adapter: SoLaAdapter,
    store: FeatureStore,
    out: str | os.PathLike,
    chunk_size: int = 8192,
    device: str = "auto",
    progress: bool = True,
    nan_policy: str = "error",
    video_ids: list[str] | None = None,
    skip_identity: bool = False,
) -> dict:
    """Write `adapter(store)` to a new store of the same layout at `out`; rerunning skips done videos.

    An identity adapter (`is_identity`) writes a copy of the input (callers may rely on it as a store of
    its own); with `skip_identity` it writes nothing and returns "out": None, as the output would equal the
    input (when the NaN policy changes no video: with a policy other than "error" every video is read to see).
    The counts carry "identity" (whether the adapter is one) either way.

    Under `torchrun`, videos are sharded across ranks; the main rank finishes the store at the end.
    `nan_policy` ("error", "zero", "drop-video") decides what happens to videos with NaN/Inf.
    `video_ids`: only these videos of the store (default: all of them).
    A finished video of an earlier run is kept only when its output reads back with the input's shape
    and dtype (`StoreWriter.intact`); a damaged one (truncated, replaced) is transformed again.
    Returns counts: {"videos", "written", "skipped", "redone", "dropped", "seconds", "snippets"} and
    `damaged` (the first damaged output's problem, or None). Raises `ConfigError` when `out` is or lies
    inside the input store (`sola.core.paths.check_outputs`: inputs are never modified), `StoreError` when
    `out` holds features its provenance record does not vouch for (see the module docstring), when a video
    is bad or its adapted features are not finite, or when --nan-policy drop-video drops every video.
    """
    check_chunk_size(chunk_size)
    hidden = getattr(adapter, "hidden_dim", adapter.dim)  # a control (smoother) has no hidden layer
    require_memory(4.0 * chunk_size * 2 * (adapter.dim + hidden),
                   f"transform.chunk_size={chunk_size} (one chunk at C={adapter.dim}, H={hidden})",
                   "lower --chunk-size")
    out = Path(out)
    check_outputs({"--out": out}, {"the input store": store.path})  # nor inside it
    ids = store.video_ids()
    if video_ids is not None:
        wanted = set(video_ids)
        unknown = sorted(wanted - set(ids))
        if unknown:
            raise StoreError(f"feature store {store.path} has no video {unknown[0]!r} ({len(unknown)} asked for are missing)")
        ids = [video_id for video_id in ids if video_id in wanted]
    if not ids:
        raise StoreError(f"feature store {store.path} holds no videos")
    identity = is_identity(adapter)
    if identity and skip_identity and (nan_policy == "error" or all(_finite(store, video_id) for video_id in ids)):
        return {"videos": len(ids), "written": 0, "skipped": 0, "redone": 0, "damaged": None, "dropped": 0,
                "snippets": 0, "seconds": 0.0, "out": None, "identity": True}
    context = setup_distributed(device)
    writer = store.writer(out)
    record = provenance(adapter, store, nan_policy, chunk_size)
    check_provenance(writer, record, ids)
    if context.is_main and not provenance_file(writer).is_file():
        atomic_write_text(provenance_file(writer), json_text(record, indent=1, sort_keys=True) + "\n")
    barrier(context)  # every rank checked the output before any video of this run is written
    mine = ids[context.rank :: context.world_size]  # every layout writes videos one by one, atomically
    started = time.perf_counter()
    written = skipped = dropped = snippets = 0
    damaged: list[str] = []  # problems of finished outputs that were redone
    bar = tqdm(mine, desc="transform", unit="video", disable=(not progress or not context.is_main) or None)
    trim = HeapTrim()  # bounds the heap's growth on large stores (see sola.core.memory)
    for video_id in bar:
        if writer.has(video_id):
            problem = writer.intact(video_id, *_expected(store, video_id))
            if problem is None:
                skipped += 1
                continue
            damaged.append(problem)
        where = store.source_of(video_id)
        features = apply_nan_policy(store.read(video_id), nan_policy, where)
        if features is None:
            dropped += 1
            continue
        if features.shape[1] != adapter.dim:
            raise StoreError(
                f"{where}: feature dim {features.shape[1]} but the adapter was fitted on dim {adapter.dim}; "
                "all videos of a store must come from one extractor (`sola inspect` lists the dims)"
            )
        adapted = apply_adapter(adapter, features, chunk_size, context.device)
        if not np.isfinite(adapted).all():  # the input is finite here (the NaN policy ran)
            largest = count_huge(features)[1]
            why = (f"its features hold {huge_values_hint(largest)}" if largest > SQUARE_LIMIT
                   else "check the adapter (`sola inspect` the features; are its weights finite?)")
            raise StoreError(f"{where}: the adapted features are not finite (NaN/Inf); {why}")
        writer.write(video_id, adapted)
        written += 1
        snippets += features.shape[0]
        trim.tick()
    kept, lost = sum_across_ranks(float(written + skipped), context), sum_across_ranks(float(dropped), context)
    if kept == 0 and lost > 0:
        raise StoreError(f"every video of {store.path} holds NaN/Inf values, so --nan-policy drop-video left none "
                         f"to write to {out}; fix the features (`sola inspect` counts them) or choose --nan-policy zero")
    barrier(context)
    if context.is_main:  # after every rank's last video: one process finishes the store
        writer.close()
    return {
        "videos": len(ids),
        "written": written,
        "skipped": skipped,
        "redone": len(damaged),
        "damaged": damaged[0] if damaged else None,
        "dropped": dropped,
        "snippets": snippets,
        "seconds": round(time.perf_counter() - started, 3),
        "out": str(out),
        "identity": identity,
    }


def _finite(store: FeatureStore, video_id: str) -> bool:
    """Whether every value of one video is finite (then no NaN policy changes it)."""
    return bool(np.isfinite(store.read(video_id)).all())


def _expected(store: FeatureStore, video_id: str) -> tuple[tuple[int, int] | None, np.dtype | None]:
    """Shape and dtype the output of one video must have: the input's (the adapter keeps both); None when
    the input cannot be opened now (the output is then only checked to read back)."""
    try:
        source = store.window_source(video_id)
        return tuple(source.shape), np.dtype(source.dtype)
    except StoreError:
        return None, None


def provenance(adapter: SoLaAdapter, store: FeatureStore, nan_policy: str, chunk_size: int) -> dict:
    """What an output store is made of: adapter digest (and architecture, or the control's settings), input store
    and value-changing settings."""
    return {
        "format": PROVENANCE_FORMAT,
        "adapter": adapter_digest(adapter),
        "made_by": {"module": type(adapter).__name__, **adapter.shape},
        "input": {"path": str(store.path.resolve()), "layout": store.layout,
                  "options": json.loads(json.dumps(store.options(), default=str))},
        "nan_policy": nan_policy,
        "chunk_size": int(chunk_size),
    }


def provenance_file(writer: StoreWriter) -> Path:
    """The provenance record of an output: inside an output directory, beside a one-file output."""
    if isinstance(writer, PartsWriter):
        return writer.path.with_name(f"{writer.path.name}.{PROVENANCE}")
    return writer.path / PROVENANCE


def check_provenance(writer: StoreWriter, record: dict, video_ids: list[str]) -> None:
    """Raise `StoreError` unless the output is new or was made by the same adapter, input and settings."""
    path, out = provenance_file(writer), writer.path
    if not path.is_file():
        done = [video_id for video_id in video_ids if writer.has(video_id)]
        if done:
            raise StoreError(
                f"--out {out} already holds features of {len(done)} of these videos (e.g. {done[0]!r}) but no "
                f"{path.name} saying that `sola transform` made them (copies of the inputs, another tool, or an "
                f"older sola); choose a new --out, or delete them to transform again"
            )
        return
    fix = f"delete {out} and {path.name} to transform again"
    try:
        previous = read_json(path, {}, dict, (), fix)
    except CheckpointError as exc:
        raise StoreError(str(exc)) from None
    if not isinstance(previous.get("input") or {}, dict):
        raise StoreError(f"{path}: 'input' is not a JSON object; {fix}")
    what = {"adapter": "another adapter (or smoothing)", "input": "another input store", "nan_policy": "another --nan-policy",
            "chunk_size": "another --chunk-size", "format": "another sola version"}
    differ = [what[key] for key in what if previous.get(key) != record[key]]
    if differ:
        made = previous.get("input", {}).get("path", "?") if "another input store" in differ else None
        raise StoreError(
            f"--out {out} holds features made with {' and '.join(differ)}"
            f"{f' (from {made})' if made else ''} (recorded in {path}); choose a new --out, or delete {out} "
            f"and {path.name} to transform again (features of two runs are never mixed)"
        )
