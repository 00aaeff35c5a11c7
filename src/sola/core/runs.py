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

from sola.core.atomic import atomic_path, atomic_write_text
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
    if required and (not run_dir.is_dir() or run_kind(run_dir) not in (None, ADAPTER_RUN)):
        check_run(run_dir, ADAPTER_RUN)  # a head run, a file, nothing: named as every command names them
    if required and not found:
        raise CheckpointError(f"{run_dir}: no {CHECKPOINTS}/epoch_XXXX.safetensors; is this a `sola train` run directory?")
    return sorted(found)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically."""
    atomic_write_text(Path(path), json.dumps(data, indent=1))


def read_json(path: str | os.PathLike, default: Any = None, kind: type | None = None, keys: tuple[str, ...] = (),
              fix: str = "restore it, or delete it and rerun the command that wrote it") -> Any:
    """The JSON in `path`, or `default` when the file does not exist.

    A file that exists must hold JSON (of type `kind` with `keys`, when given): raises `CheckpointError`
    naming the file and `fix` when it is a directory, empty, truncated, not JSON or lacks a key.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return default
    text = _run_file_text(path, fix)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {'empty' if not text.strip() else f'not valid JSON ({exc})'}; {fix}") from None
    _check_shape(data, kind, keys, str(path), fix)
    return data


def _run_file_text(path: Path, fix: str) -> str:
    """The text of a run folder's file; raises `CheckpointError` for a directory, a non-regular file or bad bytes."""
    if path.is_dir():
        raise CheckpointError(f"{path}: a directory where a file is expected; {fix}")
    if not path.is_file():
        raise CheckpointError(f"{path}: " + ("a link to nothing" if path.is_symlink() else "not a regular file")
                              + f"; {fix}")
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not text (binary garbage); {fix}") from None


def _check_shape(data: Any, kind: type | None, keys: tuple[str, ...], where: str, fix: str) -> None:
    if kind is not None and not isinstance(data, kind):
        raise CheckpointError(f"{where}: a JSON {type(data).__name__}, expected a JSON "
                              f"{'object' if kind is dict else kind.__name__}; {fix}")
    missing = [key for key in keys if key not in data]
    if missing:
        raise CheckpointError(f"{where}: no {', '.join(repr(key) for key in missing)}; {fix}")


def write_metrics(run_dir: str | os.PathLike, records: list[dict]) -> None:
    """Write the whole metrics log (one JSON line per epoch) atomically."""
    atomic_write_text(Path(run_dir) / METRICS, "".join(json.dumps(record) + "\n" for record in records))


# What every line of a `sola train` run's metrics log holds (numbers, or null for a non-finite value)
ADAPTER_METRICS = ("epoch", "loss", "gate", "departure", "seconds", "steps")


def read_metrics(run_dir: str | os.PathLike, keys: tuple[str, ...] = ("epoch",),
                 fix: str = "repair or delete that line") -> list[dict]:
    """The metrics log of a run (empty when there is none yet).

    Every line must be a JSON object whose `keys` are numbers (or null); raises `CheckpointError` naming the
    file, the line and `fix` otherwise.
    """
    path = Path(run_dir) / METRICS
    if not path.exists() and not path.is_symlink():
        return []
    records = []
    for number, line in enumerate(_run_file_text(path, fix).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except ValueError:
            raise CheckpointError(f"{where}: not a JSON line ({line[:40]!r}); {fix}") from None
        _check_shape(record, dict, keys, where, fix)
        bad = [key for key in keys if record[key] is not None
               and (isinstance(record[key], bool) or not isinstance(record[key], (int, float)))]
        if bad:
            raise CheckpointError(f"{where}: {bad[0]} is {record[bad[0]]!r}, not a number; {fix}")
        records.append(record)
    return records


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
    `CheckpointError` for a missing or unreadable file, or one of another format (see `check_safetensors`).
    """
    from safetensors import safe_open

    metadata = check_safetensors(path, fmt, what, fix)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # safetensors raises several types for bad data
        raise CheckpointError(f"{path}: unreadable {what}, corrupt or truncated (not a readable safetensors "
                              f"file: {exc}); {fix}") from None
    return tensors, metadata


def check_safetensors(path: str | os.PathLike, fmt: str, what: str, fix: str) -> dict[str, str]:
    """The metadata of a whole safetensors file of format `fmt`, reading no tensor (cheap: before long work).

    Raises `CheckpointError` naming the file for a missing one, a directory, a device, an empty, truncated
    or garbled file, or one of another format.
    """
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: a directory, not a {what} file; {fix}")
    if not path.exists():
        raise CheckpointError(f"{path}: no {what} here; {fix}")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a regular file, so not a {what}; {fix}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: unreadable {what}: an empty file (0 bytes), corrupt; {fix}")
    try:  # opening checks the header and that the data covers the file, as far as it goes
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a bad header
        raise CheckpointError(f"{path}: unreadable {what}, corrupt or truncated (not a readable safetensors "
                              f"file: {exc}); {fix}") from None
    if metadata.get("format") != fmt:
        raise CheckpointError(f"{path}: not a {what} (metadata format={metadata.get('format')!r}); {fix}")
    return metadata


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
    return tensors, json.dumps(optim["param_groups"])


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
    write_safetensors(path, tensors, {"format": fmt, "state": json.dumps({**info, "param_groups": param_groups})})


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
    atomic_write_text(Path(run_dir) / RECORD, json.dumps(store_record(store)))


def read_record(run_dir: str | os.PathLike) -> dict | None:
    """The run's `run.json` (None when it has none); raises `CheckpointError` for a corrupt one."""
    return read_json(Path(run_dir) / RECORD, None, dict, ("features", "layout", "options"),
                     "rerun `sola train` in a new --out, or name the features explicitly")


def fitted_store(run_dir: str | os.PathLike) -> FeatureStore:
    """Open the feature store an adapter run was fitted on (its `run.json`); raises `CheckpointError`."""
    check_run(run_dir, ADAPTER_RUN)
    record = read_record(run_dir)
    if record is None:
        raise CheckpointError(f"{run_dir}: no {RECORD} saying which features it was fitted on; "
                              "name the features explicitly")
    from sola.data.stores import open_store

    if not isinstance(record["options"], dict):
        raise CheckpointError(f"{Path(run_dir) / RECORD}: 'options' is not a JSON object; name the features explicitly")
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
    lines = read_metrics(run_dir, ADAPTER_METRICS)
    if not lines:
        return {}
    return {
        "epochs": lines[-1]["epoch"],
        "first_loss": lines[0]["loss"],
        "last_loss": lines[-1]["loss"],
        "gate": lines[-1]["gate"],
        "departure": lines[-1]["departure"],
        "seconds": float(sum(line["seconds"] or 0.0 for line in lines)),
        "steps": int(sum(line["steps"] or 0 for line in lines)),
        "health": lines[-1].get("health"),
        "constant_map": bool(lines[-1].get("constant_map", False)),
    }


# The kinds of run folder, as every command names them: one check, one message (`check_run`)
ADAPTER_RUN, HEAD_RUN = "adapter", "head"
RUN_KINDS = {ADAPTER_RUN: "a SoLa adapter run (sola train)", HEAD_RUN: "a head run (sola tal train)"}
_MARKERS = {HEAD_RUN: (WEIGHTS, CLASSES, ADAPTER_SHAPE, "features.json"),
            ADAPTER_RUN: (RECORD, ADAPTER, BEST, SELECTION, CHECKPOINTS)}
ADAPTER_SECTIONS = ("adapter", "matching", "fit", "transform")  # what every config.yaml of a kind holds
HEAD_SECTIONS = ("data", "model", "train", "test")
_SECTIONS = {HEAD_RUN: set(HEAD_SECTIONS), ADAPTER_RUN: set(ADAPTER_SECTIONS) - {"transform"}}


def run_kind(path: str | os.PathLike) -> str | None:
    """`ADAPTER_RUN` for a `sola train` folder, `HEAD_RUN` for a `sola tal train` folder, None for anything else.

    Judged by the files only one kind writes, then by the sections of `config.yaml`, then by the format
    of `state.safetensors` (a run killed in its first epoch); reads no tensor and never raises.
    """
    path = Path(path)
    if not path.is_dir():
        return None
    for kind, names in _MARKERS.items():
        if any((path / name).exists() for name in names):
            return kind
    try:
        import yaml

        sections = set(yaml.safe_load((path / CONFIG).read_text()) or {})
    except Exception:  # missing, unreadable or not a mapping: look at the state
        sections = set()
    for kind, names in _SECTIONS.items():
        if sections & names:
            return kind
    fmt = _safetensors_format(path / STATE)
    if fmt:
        return HEAD_RUN if fmt.startswith("sola-tal") else ADAPTER_RUN
    return None


def _safetensors_format(path: Path) -> str | None:
    """The metadata `format` of a safetensors file, from its header alone (None when unreadable)."""
    try:
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if not 0 < size < 1 << 24:
                return None
            return json.loads(handle.read(size)).get("__metadata__", {}).get("format")
    except (OSError, ValueError, AttributeError):
        return None


def check_run(path: str | os.PathLike, expected: str, allow_new: bool = False) -> Path:
    """`path` as a Path when it is a run folder of kind `expected` (`ADAPTER_RUN` or `HEAD_RUN`).

    With `allow_new`, a missing folder or one without any run file passes too (a run to start, or one
    killed before its first epoch). Raises `CheckpointError` with the one message every command gives:
    "RUN is a SoLa adapter run (sola train), not a head run (sola tal train)".
    """
    path = Path(path)
    want = RUN_KINDS[expected]
    kind = run_kind(path)
    if kind == expected:
        return path
    if kind is not None:
        raise CheckpointError(f"{path} is {RUN_KINDS[kind]}, not {want}")
    if allow_new and (path.is_dir() or not path.exists()) and not path.is_symlink():
        return path
    if path.is_symlink() and not path.exists():
        raise CheckpointError(f"{path}: a link to {os.readlink(path)}, which does not exist; give the folder of {want}")
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give the folder of {want}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is a file, not a run folder; give the folder of {want}")
    raise CheckpointError(f"{path} is not a run folder (no {CONFIG} or other run files); give the folder of {want}")


def run_config_file(run_dir: str | os.PathLike, sections: tuple[str, ...], fix: str) -> Path:
    """The run's `config.yaml`, checked to be whole: a YAML mapping holding every one of `sections`
    (sola writes every key). Raises `CheckpointError` naming the file for a missing, empty, truncated
    or garbled one."""
    import yaml

    path = Path(run_dir) / CONFIG
    if not path.exists() and not path.is_symlink():
        raise CheckpointError(f"{path} does not exist; {fix}")
    text = _run_file_text(path, fix)
    if not text.strip():
        raise CheckpointError(f"{path}: empty; {fix}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CheckpointError(f"{path}: not valid YAML{where} (truncated or garbled); {fix}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: not a mapping of config sections; {fix}")
    missing = [section for section in sections if not isinstance(data.get(section), dict)]
    if missing:
        raise CheckpointError(f"{path}: no section {', '.join(missing)} (truncated?); {fix}")
    return path
