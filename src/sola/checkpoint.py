"""Resumable training state in safetensors: model, optimiser moments and the epoch reached.

Every safetensors file sola writes goes through `write_safetensors`, so that the same tensors and
metadata give the same bytes in every process (a resumed or repeated run is byte-identical).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from sola.atomic import atomic_path
from sola.errors import CheckpointError

STATE_FORMAT = "sola-training-state"


def write_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write `tensors` and string `metadata` as a safetensors file, atomically and deterministically.

    safetensors keeps the metadata in a Rust HashMap whose order changes from process to process,
    so its header is rewritten here with the metadata keys sorted (tensor entries and data as written).
    """
    data = save(tensors, metadata=metadata)
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the header is padded to 8 bytes, as safetensors does
    with atomic_path(path) as tmp:
        tmp.write_bytes(len(text).to_bytes(8, "little") + text + data[8 + size :])


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str = "optim.") -> tuple[dict[str, torch.Tensor], str]:
    """Flatten an optimiser's state for safetensors: ({prefix}{param index}.{key} -> tensor, param groups as JSON)."""
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


def save_training_state(
    path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int
) -> None:
    """Write model + optimiser state after `epoch` completed epochs, atomically (no pickle)."""
    tensors = {f"model.{name}": t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    optim_tensors, param_groups = optimizer_tensors(optimizer)
    tensors.update(optim_tensors)
    metadata = {"format": STATE_FORMAT, "epoch": str(epoch), "param_groups": param_groups}
    write_safetensors(path, tensors, metadata)


def load_training_state(
    path: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> int:
    """Restore model + optimiser from `save_training_state`; return the epochs already done."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state to resume from; start a new run without --resume")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable training state ({exc})") from None
    if metadata.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a SoLa training state")
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(model_state, strict=True)
        load_optimizer_tensors(optimizer, tensors, metadata["param_groups"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(
            f"{path}: the saved state does not match this model/config ({exc}); resume with the run's own config"
        ) from None
    return int(metadata["epoch"])
