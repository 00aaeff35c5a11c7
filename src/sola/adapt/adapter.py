"""The SoLa adapter: a gated residual temporal conv that keeps the feature dimension.

    g(f) = Conv1d(C->H, k, 'same') -> ReLU -> Conv1d(H->H, 1) -> ReLU -> Conv1d(H->C, 1)
    SoLa(f) = f + tanh(alpha) * g(f),   alpha = 0 at init, so an untrained adapter is the identity.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sola.core.atomic import json_text
from sola.core.config import AdapterConfig
from sola.core.errors import CheckpointError
from sola.core.inputs import input_file
from sola.core.memory import require_memory
from sola.core.runs import ADAPTER, ADAPTER_RUN, BEST, check_run, read_safetensors, write_safetensors

ADAPTER_FORMAT = "sola-adapter"
ADAPTER_FORMAT_VERSION = "1"


class SoLaAdapter(nn.Module):
    """Maps features `(B, T, C)` to adapted features `(B, T, C)`; same T, same C."""

    def __init__(self, dim: int, hidden_dim: int = 512, kernel_size: int = 5, dilation: int = 1) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        require_memory(4.0 * (dim * hidden_dim * kernel_size + hidden_dim * hidden_dim + hidden_dim * dim),
                       f"an adapter of C={dim}, H={hidden_dim}, k={kernel_size}", "lower adapter.hidden_dim")
        self.dim, self.hidden_dim = dim, hidden_dim
        self.kernel_size, self.dilation = kernel_size, dilation
        self.temporal = nn.Conv1d(dim, hidden_dim, kernel_size, padding=self.radius, dilation=dilation)
        self.mix = nn.Conv1d(hidden_dim, hidden_dim, 1)
        self.out = nn.Conv1d(hidden_dim, dim, 1)
        self.alpha = nn.Parameter(torch.zeros(()))

    @classmethod
    def from_config(cls, dim: int, config: AdapterConfig) -> "SoLaAdapter":
        """Build an adapter for features of dimension `dim`."""
        return cls(dim, config.hidden_dim, config.kernel_size, config.dilation)

    @property
    def radius(self) -> int:
        """Snippets on each side that one output snippet depends on."""
        return self.dilation * (self.kernel_size - 1) // 2

    @property
    def gate(self) -> float:
        """tanh(alpha): how far the adapter departs from the identity (0 at init)."""
        return float(torch.tanh(self.alpha.detach()))

    def residual(self, features: torch.Tensor) -> torch.Tensor:
        """g(f): `(B, T, C)` -> `(B, T, C)`, before the gate."""
        x = features.transpose(1, 2)  # (B, C, T)
        x = torch.relu(self.temporal(x))
        x = torch.relu(self.mix(x))
        return self.out(x).transpose(1, 2)  # (B, T, C)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """`f + tanh(alpha) * g(f)` for features `(B, T, C)`."""
        return features + torch.tanh(self.alpha) * self.residual(features)

    def residual_at(self, features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """g(f) at some positions only: `(B, T, C)`, `(N,)` -> `(B, N, C)`.

        Equals `residual(features)[:, positions]` when every position has the full receptive field
        inside T (no padding), at N/T of the cost: training needs only the gathered positions.
        """
        taps = self.dilation * (torch.arange(self.kernel_size, device=features.device) - self.kernel_size // 2)
        index = positions[:, None] + taps[None, :]  # (N, k)
        x = features[:, index].flatten(2)  # (B, N, k*C): each position's receptive field
        # The convs as matrix products (one GEMM each): conv weight (H, C, k) -> (H, k*C).
        first = self.temporal.weight.permute(0, 2, 1).flatten(1)
        x = torch.relu(F.linear(x, first, self.temporal.bias))  # (B, N, H)
        x = torch.relu(F.linear(x, self.mix.weight.squeeze(-1), self.mix.bias))  # (B, N, H)
        return F.linear(x, self.out.weight.squeeze(-1), self.out.bias)  # (B, N, C)

    @property
    def shape(self) -> dict[str, int]:
        """The architecture: `SoLaAdapter(**adapter.shape)` builds an adapter of the same shape."""
        return {"dim": self.dim, "hidden_dim": self.hidden_dim, "kernel_size": self.kernel_size,
                "dilation": self.dilation}


def adapter_metadata(adapter: SoLaAdapter, extra: dict | None = None) -> dict[str, str]:
    """String metadata stored in the safetensors header: format, architecture, provenance."""
    meta = {"format": ADAPTER_FORMAT, "format_version": ADAPTER_FORMAT_VERSION}
    meta.update({key: str(value) for key, value in adapter.shape.items()})
    for key, value in (extra or {}).items():
        meta[key] = value if isinstance(value, str) else json_text(value)
    return meta


def adapter_digest(adapter: SoLaAdapter) -> str:
    """SHA-256 of an adapter's architecture and weights (what its outputs depend on)."""
    digest = hashlib.sha256(repr(tuple(adapter.shape.values())).encode())
    for name, tensor in sorted(adapter.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def nonfinite_weights(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the tensors holding NaN or Inf (a diverged fit)."""
    return [name for name, tensor in tensors.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def save_adapter(adapter: SoLaAdapter, path: str | os.PathLike, extra: dict | None = None) -> Path:
    """Write the adapter (weights only, no projector) as safetensors, atomically.

    Raises `CheckpointError` (writing nothing) when a weight is NaN/Inf: such an adapter turns every
    feature into NaN.
    """
    path = Path(path)
    tensors = {name: t.detach().cpu().contiguous() for name, t in adapter.state_dict().items()}
    bad = nonfinite_weights(tensors)
    if bad:
        raise CheckpointError(
            f"{path}: not written: the adapter's weights {', '.join(bad)} hold NaN/Inf (the fit diverged); "
            "fit again with a lower fit.lr"
        )
    write_safetensors(path, tensors, adapter_metadata(adapter, extra))
    return path


def resolve_adapter_path(path: str | os.PathLike) -> Path:
    """Accept a `.safetensors` file or a run directory (its `best.safetensors`, else `adapter.safetensors`).

    Raises `CheckpointError` for a missing path or a folder that is no adapter run (a head run, say);
    the file itself is checked when it is read (`read_safetensors`).
    """
    path = Path(path)
    if path.is_dir() and not path.name.endswith(".safetensors"):
        check_run(path, ADAPTER_RUN)
        for name in (BEST, ADAPTER):
            if (path / name).exists():
                return path / name
        raise CheckpointError(f"{path}: no {ADAPTER} in this run directory (no finished checkpoint); "
                              "train one with `sola train`")
    if path.is_dir() or not path.exists():  # a folder named *.safetensors, a missing file
        return input_file(path, "adapter file", CheckpointError)
    return path


def load_adapter(path: str | os.PathLike, device: str | torch.device = "cpu") -> SoLaAdapter:
    """Load an adapter saved by `save_adapter` (or a run directory); raises `CheckpointError`, also
    for NaN/Inf weights."""
    path = resolve_adapter_path(path)
    tensors, meta = read_safetensors(path, ADAPTER_FORMAT, "SoLa adapter", "fit one with `sola train`")
    try:
        adapter = SoLaAdapter(**{key: int(meta[key]) for key in ("dim", "hidden_dim", "kernel_size", "dilation")})
        adapter.load_state_dict(tensors, strict=True)
    except (KeyError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: adapter weights do not match their metadata ({exc})") from None
    bad = nonfinite_weights(tensors)
    if bad:
        raise CheckpointError(
            f"{path}: the adapter's weights {', '.join(bad)} hold NaN/Inf, so it would turn every feature into "
            "NaN (a diverged fit); fit again with a lower fit.lr, or use a checkpoint from before it diverged"
        )
    return adapter.to(device).eval()
