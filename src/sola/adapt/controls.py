"""Controls for "is SoLa more than smoothing?": a fixed temporal smoothing and an untrained adapter.

- `TemporalSmoother`: the features convolved along time with a fixed normalised kernel (box or
  Gaussian) of the adapter's receptive field (`kernel_size` taps spaced `dilation` snippets apart),
  zero-padded at the video's ends exactly as the adapter's first conv is. It has the adapter's
  interface (`(B, T, C) -> (B, T, C)`, `dim`, `radius`, `gate`, `residual`, `shape`), so
  `sola.adapt.transform.transform_store` writes its features like SoLa's: layout and dtype kept,
  atomic, resumable, with a provenance record (`smooth_store`; `sola transform FEATURES --smooth 5`).
- `untrained_adapter`: a SoLa adapter at initialisation (the fit's own initialisation for that
  seed) whose gate tanh(alpha) is set so that its departure, mean ||tanh(alpha) g(f)|| / ||f|| over
  snippets, equals a fitted adapter's on the same features: the architecture without Similarity
  Matching. Departure is linear in tanh(alpha), so alpha follows in closed form.

Departures are measured on whole videos (`departure_videos`: up to 64, evenly spaced over the store's
sorted ids), each snippet weighted alike; snippets with ||f|| = 0 and videos holding NaN/Inf are left out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sola.adapt.adapter import SoLaAdapter
from sola.adapt.transform import chunked_residual
from sola.core.config import AdapterConfig
from sola.core.errors import ConfigError, StoreError

SMOOTH_KERNELS = ("box", "gaussian")
DEPARTURE_VIDEOS = 64  # videos on which a departure is measured (evenly spaced over the store)
GATE_CAP = 0.5  # an untrained g too small for the target departure is scaled so that tanh(alpha) = this


@dataclass(frozen=True)
class SmoothConfig:
    """The smoothing control: kernel shape and geometry (defaults: the adapter's, `AdapterConfig`)."""

    kernel: str = "box"  # box: equal weights; gaussian: exp(-j^2 / (2 sigma^2)) over taps j = -r..r
    kernel_size: int = AdapterConfig.kernel_size  # taps (odd)
    dilation: int = AdapterConfig.dilation  # snippets between taps
    sigma: float | None = None  # gaussian only, in taps; None: (kernel_size - 1) / 4 (the kernel spans +-2 sigma)

    @classmethod
    def like(cls, adapter: AdapterConfig | dict, **overrides) -> "SmoothConfig":
        """The smoothing of an adapter's receptive field (`AdapterConfig` or an adapter's `shape`)."""
        geometry = adapter if isinstance(adapter, dict) else asdict(adapter)
        return cls(**{"kernel_size": geometry["kernel_size"], "dilation": geometry["dilation"], **overrides}).validate()

    def validate(self) -> "SmoothConfig":
        """Raise `ConfigError` for an unknown kernel, an even or non-positive size, a bad dilation or sigma."""
        if self.kernel not in SMOOTH_KERNELS:
            raise ConfigError(f"smoothing kernel {self.kernel!r}: choose {' or '.join(SMOOTH_KERNELS)} "
                              "(--smooth-kernel)")
        for name, value in (("kernel size (--smooth, --smooth-size)", self.kernel_size),
                            ("dilation (--dilation, --smooth-dilation)", self.dilation)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"smoothing {name} must be a positive integer, got {value!r}")
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"smoothing kernel size (--smooth, --smooth-size) must be odd, as the adapter's kernel "
                              f"(centred, 'same' length), got {self.kernel_size}; use {self.kernel_size + 1}")
        if self.sigma is not None and not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma)
                                           and self.sigma > 0):
            raise ConfigError(f"gaussian sigma must be a positive number of taps, got {self.sigma!r}")
        return self

    def weights(self) -> np.ndarray:
        """The normalised kernel `(kernel_size,)`, float64, summing to 1."""
        taps = np.arange(self.kernel_size, dtype=np.float64) - self.kernel_size // 2
        if self.kernel == "box" or self.kernel_size == 1:
            weights = np.ones(self.kernel_size)
        else:
            sigma = self.sigma if self.sigma is not None else (self.kernel_size - 1) / 4
            weights = np.exp(-taps**2 / (2 * sigma**2))
        return weights / weights.sum()


class TemporalSmoother(nn.Module):
    """Features `(B, T, C)` -> the same features smoothed along T by a fixed kernel; same T, same C.

    out[t] = sum_j w_j f[t + dilation * (j - k // 2)], with f = 0 outside the video (the adapter's
    zero padding), so the first and last `radius` snippets are scaled down as the adapter's conv sees them.
    """

    def __init__(self, dim: int, config: SmoothConfig | None = None) -> None:
        super().__init__()
        self.config = (config or SmoothConfig()).validate()
        self.dim = int(dim)
        self.kernel_size, self.dilation = self.config.kernel_size, self.config.dilation
        self.register_buffer("kernel", torch.from_numpy(self.config.weights()).float())  # (k,)

    @property
    def radius(self) -> int:
        """Snippets on each side that one output snippet depends on."""
        return self.dilation * (self.kernel_size - 1) // 2

    @property
    def gate(self) -> float:
        """1: `transform`'s f + gate * residual(f) is the smoothed f."""
        return 1.0

    def smooth(self, features: torch.Tensor) -> torch.Tensor:
        """The smoothed features: `(B, T, C)` -> `(B, T, C)`."""
        x = features.transpose(1, 2)  # (B, C, T)
        weight = self.kernel.to(x.dtype).expand(x.shape[1], 1, self.kernel_size)  # (C, 1, k): one kernel per channel
        x = F.conv1d(x, weight, padding=self.radius, dilation=self.dilation, groups=x.shape[1])
        return x.transpose(1, 2)  # (B, T, C)

    def residual(self, features: torch.Tensor) -> torch.Tensor:
        """smooth(f) - f: `(B, T, C)` -> `(B, T, C)` (what `sola.adapt.transform.apply_adapter` adds)."""
        return self.smooth(features) - features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """The smoothed features `(B, T, C)`."""
        return self.smooth(features)

    @property
    def shape(self) -> dict:
        """What the output depends on besides the input (recorded in the transform's provenance)."""
        sigma = self.config.sigma if self.config.kernel == "gaussian" else None
        return {"control": "smooth", "dim": self.dim, "kernel": self.config.kernel, "kernel_size": self.kernel_size,
                "dilation": self.dilation, **({"sigma": sigma} if sigma is not None else {})}


def smooth_store(store, out, config: SmoothConfig | None = None, **options) -> dict:
    """Write the smoothing control of `store` to `out` (`sola transform FEATURES --smooth K --out OUT`).

    `config`: default the adapter's receptive field, a box of 5 taps; `options`: those of
    `sola.adapt.transform.transform_store` (chunk_size, device, progress, nan_policy, video_ids). The
    output keeps the layout and dtype, is resumable and carries a provenance record. Returns the counts.
    """
    from sola.adapt.transform import transform_store

    return transform_store(TemporalSmoother(store.dim(), config), store, out, **options)


def departure_videos(store, max_videos: int = DEPARTURE_VIDEOS) -> list[str]:
    """The videos a departure is measured on: all of `store`'s, or `max_videos` evenly spaced over its sorted ids."""
    ids = sorted(store.video_ids())
    if len(ids) <= max_videos:
        return ids
    return [ids[i] for i in np.unique(np.linspace(0, len(ids) - 1, max_videos).round().astype(int))]


def _finite_rows(features: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """`(features as float64, norms)` of the snippets with ||f|| > 0; None for a video holding NaN/Inf."""
    values = np.asarray(features, dtype=np.float64)
    if not np.isfinite(values).all():
        return None
    norms = np.linalg.norm(values, axis=1)
    return values, norms


def store_departure(original, adapted, video_ids: list[str] | None = None) -> float:
    """Mean over snippets of ||a - f|| / ||f||: how far store `adapted` departs from store `original`.

    `video_ids`: default `departure_videos(original)`. For `sola transform` output this is the adapter's
    departure (up to the stored dtype's rounding). Raises `StoreError` when no snippet can be measured
    or the two stores disagree on a video's shape.
    """
    total, count = 0.0, 0
    for video_id in video_ids if video_ids is not None else departure_videos(original):
        rows = _finite_rows(original.read(video_id))
        changed = np.asarray(adapted.read(video_id), dtype=np.float64)
        if rows is None or not np.isfinite(changed).all():
            continue
        values, norms = rows
        if changed.shape != values.shape:
            raise StoreError(f"{adapted.path}: video {video_id!r} has shape {changed.shape}, {original.path} has "
                             f"{values.shape}; compare a store with its own transform")
        keep = norms > 0
        total += float((np.linalg.norm(changed - values, axis=1)[keep] / norms[keep]).sum())
        count += int(keep.sum())
    return _mean(total, count, original)


@torch.inference_mode()
def residual_departure(adapter: SoLaAdapter, store, video_ids: list[str] | None = None,
                       chunk_size: int = 8192) -> float:
    """Mean over snippets of ||g(f)|| / ||f||: the departure `adapter` would have at gate 1.

    g runs on whole videos in float32 (chunked as `sola.adapt.transform.apply_adapter` does).
    `video_ids`: default `departure_videos(store)`. Raises `StoreError` when no snippet can be measured.
    """
    adapter = adapter.cpu().eval()
    total, count = 0.0, 0
    for video_id in video_ids if video_ids is not None else departure_videos(store):
        rows = _finite_rows(store.read(video_id))
        if rows is None:
            continue
        values, norms = rows
        inputs = torch.from_numpy(values.astype(np.float32))  # (T, C)
        change = chunked_residual(adapter, inputs, chunk_size).double().numpy()  # (T, C)
        keep = norms > 0
        total += float((np.linalg.norm(change, axis=1)[keep] / norms[keep]).sum())
        count += int(keep.sum())
    return _mean(total, count, store)


def adapter_departure(adapter: SoLaAdapter, store, video_ids: list[str] | None = None) -> float:
    """Mean over snippets of ||tanh(alpha) g(f)|| / ||f||: how far `adapter` moves `store`'s features."""
    return abs(adapter.gate) * residual_departure(adapter, store, video_ids)


def _mean(total: float, count: int, store) -> float:
    if count == 0:
        raise StoreError(f"{store.path}: no finite, non-zero snippet to measure a departure on; check the features "
                         "(`sola inspect`)")
    return total / count


def untrained_adapter(store, departure: float, shape: AdapterConfig | dict | None = None, seed: int = 0,
                      video_ids: list[str] | None = None) -> tuple[SoLaAdapter, dict]:
    """A SoLa adapter at initialisation, gated so that its departure on `store` equals `departure`.

    `shape`: the fitted adapter's architecture (`AdapterConfig`, or `SoLaAdapter.shape`; default the
    reference's); the weights of g are those `sola.adapt.fit.fit_adapter` starts from with `fit.seed =
    seed` (the global torch RNG is left as it was). With d1 = `residual_departure` (gate 1),
    tanh(alpha) = departure / d1. When d1 <= departure (no gate reaches it), g's last conv is scaled
    so that tanh(alpha) is about `GATE_CAP`; the record says by how much. `departure` 0 gives the identity.
    Returns `(adapter, record)`, record: {"departure", "gate", "alpha", "residual_departure",
    "out_scale", "seed", "videos"}. Raises `ConfigError` for a negative or non-finite `departure`.
    """
    if not (isinstance(departure, (int, float)) and math.isfinite(departure) and departure >= 0):
        raise ConfigError(f"the departure to match must be a finite number >= 0, got {departure!r}")
    geometry = asdict(shape or AdapterConfig()) if not isinstance(shape, dict) else dict(shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # as fit_adapter does before building its adapter
        adapter = SoLaAdapter(store.dim(), geometry["hidden_dim"], geometry["kernel_size"], geometry["dilation"])
    adapter.eval()
    ids = video_ids if video_ids is not None else departure_videos(store)
    scale, at_one = 1.0, residual_departure(adapter, store, ids)
    if not (math.isfinite(at_one) and at_one > 0):
        raise StoreError(f"{store.path}: the untrained adapter's residual is {at_one} on these features; "
                         "no gate gives it a departure")
    gate = departure / at_one
    if gate > 0.9:  # tanh(alpha) < 1, and precise well below it: scale g's output layer (g is linear in it)
        scale = gate / GATE_CAP
        with torch.no_grad():
            adapter.out.weight.mul_(scale)
            adapter.out.bias.mul_(scale)
        at_one = residual_departure(adapter, store, ids)  # measured again: the scaled weights are rounded
        gate = departure / at_one
    with torch.no_grad():
        adapter.alpha.fill_(math.atanh(gate))
    record = {"departure": float(departure), "gate": adapter.gate, "alpha": float(adapter.alpha.detach()),
              "residual_departure": at_one, "out_scale": scale, "seed": int(seed), "videos": len(ids)}
    return adapter, record
