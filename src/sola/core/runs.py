"""Run directories: the one place that names their files and reads and writes their safetensors.

Both kinds of run (`sola train`, the SoLa adapter fit; `sola tal train`, the TAL head) use the same
names for the same things:

    config.yaml          the full config of the run
    metrics.jsonl        one JSON line per finished epoch
    state.safetensors    the resumable training state (model, optimiser moments, epoch, ...)

An adapter fit also holds `run.json` (the feature store it was fitted on), `adapter.safetensors`
(the latest adapter), `checkpoints/epoch_XXXX.safetensors`, and after `sola select`
`best.safetensors` + `select.json`. A TAL run holds `weights.safetensors` (the EMA model),
`classes.json`, `features.json` (what it was trained on, see `sola.tal.features`), with unified
training `adapter.json` (the adapter's shape), and after inference
`predictions.json` + `evaluation.json`.

Every safetensors file sola writes goes through `write_safetensors` (same tensors and metadata ->
same bytes in every process) and is read back through `read_safetensors` (one set of checks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sola.core.atomic import atomic_path, atomic_write_text, json_text
from sola.core.errors import CheckpointError

IDENTITY = "identity"  # the candidate "no adapter" in every selection

if TYPE_CHECKING:  # torch and the stores load on first use: commands without tensors never import torch
    import torch

    from sola.data.stores import FeatureStore

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
STATE = "state.safetensors"
RECORD = "run.json"
ADAPTER = "adapter.safetensors"
BEST = "best.safetensors"
SELECTION = "select.json"
CHECKPOINTS = "checkpoints"
WINDOW_CACHE = "window_cache"  # float32 .npy copies of layouts that cannot be memory-mapped
WEIGHTS = "weights.safetensors"
CLASSES = "classes.json"
ADAPTER_SHAPE = "adapter.json"
PREDICTIONS = "predictions.json"
EVALUATION = "evaluation.json"


def checkpoint_path(run_dir: str | os.PathLike, epoch: int) -> Path:
    """Where the adapter checkpoint of `epoch` lives (epoch 0: the identity)."""
    return Path(run_dir) / CHECKPOINTS / f"epoch_{epoch:04d}.safetensors"


def list_checkpoints(run_dir: str | os.PathLike, required: bool = False) -> list[tuple[int, Path]]:
    """`(epoch, path)` of every adapter checkpoint of a run, by epoch.

    With `required`, raises `CheckpointError` when the directory or its checkpoints are missing.
    """
    run_dir = Path(run_dir)
    found = []
    for path in (run_dir / CHECKPOINTS).glob("epoch_*.safetensors"):
        try:
            found.append((int(path.stem.split("_", 1)[1]), path))
        except ValueError:
            continue  # not one of ours
    if required and not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if required and not found:
        raise CheckpointError(f"{run_dir}: no {CHECKPOINTS}/epoch_XXXX.safetensors; is this a `sola train` run directory?")
    return sorted(found)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (strict: a non-finite number is written as null)."""
    atomic_write_text(Path(path), json_text(data, indent=1))


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    """The JSON in `path`, or `default` when the file is missing or not valid JSON."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return default


def write_metrics(run_dir: str | os.PathLike, records: list[dict]) -> None:
    """Write the whole metrics log (one JSON line per epoch) atomically; a non-finite figure is written as null
    (strict JSON: the guard of the fit stops on it, and the line says why in `stopped`)."""
    atomic_write_text(Path(run_dir) / METRICS, "".join(json_text(record) + "\n" for record in records))


def read_metrics(run_dir: str | os.PathLike) -> list[dict]:
    """The metrics log of a run (empty when there is none yet)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def write_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write `tensors` and string `metadata` as a safetensors file, atomically and deterministically.

    safetensors keeps the metadata in a Rust HashMap whose order changes from process to process,
    so its header is rewritten here with the metadata keys sorted (tensor entries and data as written).
    """
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the header is padded to 8 bytes, as safetensors does
    with atomic_path(path) as tmp:
        tmp.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + size :])


def read_safetensors(path: str | os.PathLike, fmt: str, what: str, fix: str) -> tuple[dict[str, torch.Tensor],
                                                                                   dict[str, str]]:
    """`(tensors, metadata)` of a safetensors file whose metadata `format` is `fmt`, on the CPU.

    `what` names the file's kind in errors ("training state"), `fix` says what to do. Raises
    `CheckpointError` for a missing or unreadable file, or one of another format.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no {what} here; {fix}")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises several types for a bad header
        raise CheckpointError(f"{path}: unreadable {what}, not a readable safetensors file ({exc}); {fix}") from None
    if metadata.get("format") != fmt:
        raise CheckpointError(f"{path}: not a {what} (metadata format={metadata.get('format')!r}); {fix}")
    return tensors, metadata


def module_tensors(modules: dict[str, torch.nn.Module | None]) -> dict[str, torch.Tensor]:
    """`{name}.{key}` -> a CPU copy of each module's state (None modules left out)."""
    tensors = {}
    for name, module in modules.items():
        if module is not None:  # clone: one module may be shared by two others (the unified adapter)
            tensors.update({f"{name}.{key}": value.detach().cpu().clone().contiguous()
                            for key, value in module.state_dict().items()})
    return tensors


def load_module_tensors(modules: dict[str, torch.nn.Module | None], tensors: dict[str, torch.Tensor]) -> None:
    """Inverse of `module_tensors` (strict per module); raises what `load_state_dict` raises."""
    for name, module in modules.items():
        if module is not None:
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str = "optim.") -> tuple[dict[str, torch.Tensor], str]:
    """Flatten an optimiser's state for safetensors: ({prefix}{param index}.{key} -> tensor, param groups as JSON)."""
    import torch

    optim = optimizer.state_dict()
    tensors = {}
    for index, state in optim["state"].items():
        for key, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}{index}.{key}"] = tensor.detach().cpu().contiguous()
    return tensors, json_text(optim["param_groups"])


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], param_groups: str,
                           prefix: str = "optim.") -> None:
    """Inverse of `optimizer_tensors`; other keys of `tensors` are ignored. Raises what `load_state_dict` raises."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix) :].split(".", 1)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(param_groups)})


def state_mismatch(exc: Exception, limit: int = 300) -> str:
    """The telling part of a `load_state_dict` error on one line: which keys are missing, unexpected or misshapen."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = "; ".join(lines[1:] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines)
    return detail if len(detail) <= limit else detail[: limit - 3] + "..."


def save_state(path: str | os.PathLike, fmt: str, modules: dict[str, torch.nn.Module | None],
               optimizer: torch.optim.Optimizer, info: dict[str, Any],
               extra: dict[str, torch.Tensor] | None = None) -> None:
    """Write a resumable training state: modules (`{name}.*`), optimiser moments (`optim.*`), `extra`
    tensors, and `info` (JSON: epoch, step, ...) in the metadata, atomically, no pickle."""
    tensors = module_tensors(modules)
    optim, param_groups = optimizer_tensors(optimizer)
    tensors.update(optim)
    tensors.update(extra or {})
    write_safetensors(path, tensors, {"format": fmt, "state": json_text({**info, "param_groups": param_groups})})


def load_state(path: str | os.PathLike, fmt: str, modules: dict[str, torch.nn.Module | None],
               optimizer: torch.optim.Optimizer, fix: str,
               check=None) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Restore what `save_state` wrote into `modules` and `optimizer`; return `(info, tensors)`.

    `check(info)` may raise before anything is restored (a state saved with another config).
    Raises `CheckpointError` for a missing, unreadable or mismatched state, naming `fix`.
    """
    tensors, metadata = read_safetensors(path, fmt, "training state", fix)
    try:  # states of sola <= 0.x kept the epoch and param groups as metadata entries of their own
        info = json.loads(metadata["state"]) if "state" in metadata else {
            "epoch": int(metadata["epoch"]), "param_groups": metadata["param_groups"]}
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable training state (no state record: {exc}); {fix}") from None
    if check is not None:
        check(info)
    try:
        load_module_tensors(modules, tensors)
        load_optimizer_tensors(optimizer, tensors, info["param_groups"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: the saved state does not match this model/config ({state_mismatch(exc)}); "
                              "resume with the run's own config") from None
    return info, tensors


def store_record(store: FeatureStore) -> dict:
    """What `run.json` says of the store a run was fitted on: resolved path, layout, options (JSON-safe)."""
    return {"features": str(store.path.resolve()), "layout": store.layout,
            "options": json.loads(json.dumps(store.options(), default=str))}


def write_record(run_dir: str | os.PathLike, store: FeatureStore) -> None:
    """Write `run.json`: which feature store the run is fitted on."""
    atomic_write_text(Path(run_dir) / RECORD, json_text(store_record(store)))


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """The run's `run.json` (None when it has none)."""
    path = Path(run_dir) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def fitted_store(run_dir: str | os.PathLike) -> FeatureStore:
    """Open the feature store an adapter run was fitted on (its `run.json`); raises `CheckpointError`."""
    record = read_record(run_dir)
    if record is None:
        raise CheckpointError(f"{run_dir}: no {RECORD} saying which features it was fitted on; "
                              "name the features explicitly")
    from sola.data.stores import open_store

    return open_store(record["features"], layout=record["layout"], **record["options"])


def run_of(adapter_file: str | os.PathLike) -> Path | None:
    """The run directory an adapter file belongs to (`RUN_DIR/*.safetensors` or
    `RUN_DIR/checkpoints/epoch_XXXX.safetensors`: the folder with a `config.yaml`), or None."""
    adapter_file = Path(adapter_file)
    for folder in (adapter_file.parent, adapter_file.parent.parent):
        if (folder / CONFIG).is_file():
            return folder
    return None


def metrics_summary(run_dir: str | Path) -> dict:
    """First and last metrics of a run (loss, gate, departure, feature health, total seconds and steps)."""
    lines = read_metrics(run_dir)
    if not lines:
        return {}
    return {
        "epochs": lines[-1]["epoch"],
        "first_loss": lines[0]["loss"],
        "last_loss": lines[-1]["loss"],
        "gate": lines[-1]["gate"],
        "departure": lines[-1]["departure"],
        "seconds": float(sum(line["seconds"] for line in lines)),
        "steps": int(sum(line["steps"] for line in lines)),
        "health": lines[-1].get("health"),
        "constant_map": bool(lines[-1].get("constant_map", False)),
    }
