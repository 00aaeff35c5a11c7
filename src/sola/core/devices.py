"""The one place that turns a device name into a `torch.device`, and tells this process's rank.

`auto` means this process's CUDA device when CUDA is present (under `torchrun`, the one of its
LOCAL_RANK), else the CPU. `cpu`, `cuda` (this process's CUDA device) and `cuda:N` mean what they say.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from sola.core.errors import DeviceError

if TYPE_CHECKING:  # imported on first use, so that the rank helpers cost nothing
    import torch

DEVICE_NAMES = "auto, cpu, cuda or cuda:N"


def local_rank() -> int:
    """This process's index on its machine (LOCAL_RANK, set by `torchrun`; 0 without it)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def process_rank() -> int:
    """This process's global rank (RANK, set by `torchrun`; 0 without it)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """How many processes train together (WORLD_SIZE, set by `torchrun`; 1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on the process that prints summaries and writes shared outputs (rank 0)."""
    return process_rank() == 0


def resolve_device(name: str | torch.device | None = "auto", rank: int | None = None) -> torch.device:
    """`name` (auto, cpu, cuda, cuda:N; None means auto) as a `torch.device`.

    `rank` picks the CUDA device for `auto` and `cuda` (default: `local_rank()`). Raises
    `DeviceError` for an unknown name or CUDA requested where there is none.
    """
    import torch

    if isinstance(name, torch.device):
        name = str(name)
    name = "auto" if name is None else str(name).strip()
    rank = local_rank() if rank is None else rank
    if name == "auto":
        return torch.device(f"cuda:{rank}") if torch.cuda.is_available() else torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {name!r}; use {DEVICE_NAMES}") from None
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"unsupported device {name!r}; use {DEVICE_NAMES}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {name!r} requested but CUDA is not available here; use cpu or auto")
    if device.type == "cuda" and device.index is None:
        return torch.device(f"cuda:{rank}")
    return device
