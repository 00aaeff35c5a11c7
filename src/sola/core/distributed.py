"""One place for the DDP set-up: `torchrun` sets the environment, we read it.

NCCL on GPUs, gloo on the CPU. Without torchrun everything runs as rank 0 of 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from sola.core.devices import local_rank, process_rank, resolve_device, world_size
from sola.core.errors import ConfigError


@dataclass(frozen=True)
class DistributedContext:
    """Rank, world size and device of this process."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that writes logs, checkpoints and summaries."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group that `torchrun` describes (if any) and pick this rank's device."""
    processes = world_size()
    rank, local = process_rank(), local_rank()
    resolved = resolve_device(device, local)
    if processes > 1 and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend)
    return DistributedContext(rank, processes, local, resolved)


def rank_batch(key: str, batch_size: int, context: DistributedContext) -> int:
    """Each rank's share of the global batch `key`; raises `ConfigError` when the processes do not divide it."""
    if batch_size % context.world_size:
        raise ConfigError(f"{key}={batch_size} (the global batch) must be divisible by the number of processes "
                          f"({context.world_size})")
    return batch_size // context.world_size


def barrier(context: DistributedContext) -> None:
    """Wait for every rank (no-op on one process)."""
    if context.enabled:
        dist.barrier()


def mean_across_ranks(value: float, context: DistributedContext) -> float:
    """Average a Python float over all ranks (identity on one process)."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / context.world_size


def sum_across_ranks(value: float, context: DistributedContext) -> float:
    """Sum a Python number over all ranks (identity on one process)."""
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def gather_dicts(part: dict, context: DistributedContext) -> dict:
    """The union of every rank's dict (identity on one process); keys must not clash across ranks."""
    if not context.enabled:
        return part
    parts: list = [None] * context.world_size
    dist.all_gather_object(parts, part)
    merged: dict = {}
    for each in parts:
        merged.update(each)
    return merged


def shard_context() -> DistributedContext:
    """Rank and world size of the running process group (one process of one without it), for sharding work;
    the device is the CPU's (callers keep their own)."""
    if dist.is_available() and dist.is_initialized():
        return DistributedContext(dist.get_rank(), dist.get_world_size(), 0, torch.device("cpu"))
    return DistributedContext(0, 1, 0, torch.device("cpu"))
