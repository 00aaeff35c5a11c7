"""A seeded synthetic untrimmed-video benchmark that shows the task discrepancy.

Each video is a latent sequence (latent_dim) built from:
  - a per-video context vector and a slow drift that dominate every snippet (scene, camera, actor),
  - class prototypes added inside action segments, separated by background,
  - action boundaries blurred by the encoder's temporal window (a Gaussian of `blur` snippets),
  - temporally correlated noise,
then mapped into `dim` channels by one fixed random nonlinear "encoder" shared by all videos.
Features of a clip classifier look like this: class evidence is present, but the video's context
makes all snippets of a video alike and the boundaries are soft.

Written as an npy feature store plus an ActivityNet-style `annotations.json`.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sola.core.atomic import atomic_write_text, json_text
from sola.core.config import SEED, SIZE, SectionedConfig, ranged, require_config_memory
from sola.core.errors import ConfigError
from sola.core.memory import require_disk
from sola.data.stores.npy import NpyWriter


@dataclass
class SyntheticConfig:
    """Size and difficulty of the synthetic benchmark (defaults: about 200 videos, C=256, 10 classes)."""

    videos: int = ranged(200, 2, SIZE)
    dim: int = ranged(256, 1, SIZE)
    classes: int = ranged(10, 1, SIZE)
    min_length: int = ranged(100, 1, SIZE)  # snippets
    max_length: int = ranged(600, 1, SIZE)
    latent_dim: int = ranged(64, 1, SIZE)
    context_scale: float = ranged(2.5, 0.0, 1e6)  # per-video constant: dominates the features
    drift_scale: float = ranged(1.0, 0.0, 1e6)  # slow within-video change unrelated to actions
    prototype_scale: float = ranged(1.2, 0.0, 1e6)  # class evidence inside actions
    motion_scale: float = ranged(0.0, 0.0, 1e6)  # option: a distractor that changes over a few seconds, unrelated to actions
    motion_smoothing: float = ranged(5.0, 0.0, 1e4)  # snippets
    noise_scale: float = ranged(0.8, 0.0, 1e6)
    noise_smoothing: float = ranged(1.5, 0.0, 1e4)  # snippets: temporal correlation of the noise
    blur: float = ranged(2.5, 0.0, 1e4)  # snippets: the encoder's temporal window softens boundaries
    min_action: int = ranged(6, 1, SIZE)
    max_action: int = ranged(80, 1, SIZE)
    min_gap: int = ranged(4, 0, SIZE)
    max_gap: int = ranged(40, 0, SIZE)
    fps: float = ranged(30.0, 0.0, 1000.0, above=True)
    feat_stride: int = ranged(16, 1, 4096)  # frames per snippet step
    num_frames: int = ranged(16, 1, 4096)  # frames seen by one snippet
    validation_fraction: float = ranged(0.2, 0.0, 1.0, above=True, below=True)
    seed: int = ranged(0, *SEED)

    def validate(self) -> "SyntheticConfig":
        """Raise `ConfigError` on impossible sizes."""
        if self.videos < 2 or self.dim < 1 or self.classes < 1 or self.latent_dim < 1:
            raise ConfigError("synthetic: need at least 2 videos, 1 class and positive dimensions")
        if not 0 < self.min_length <= self.max_length:
            raise ConfigError(f"synthetic: need 0 < min_length <= max_length, got {self.min_length}, {self.max_length}")
        if not 1 <= self.min_action <= self.max_action or self.min_length < 2 * self.min_action:
            raise ConfigError("synthetic: need 1 <= min_action <= max_action and min_length >= 2 * min_action")
        if not 0 < self.validation_fraction < 1:
            raise ConfigError("synthetic: validation_fraction must be in (0, 1)")
        if self.min_gap > self.max_gap:
            raise ConfigError(f"synthetic: need min_gap <= max_gap, got {self.min_gap}, {self.max_gap}")
        return self

    def peak_bytes(self) -> float:
        """A lower bound of the bytes `write_synthetic` holds: the encoder, the prototypes, the per-video lengths
        and order, and the float64 arrays of the longest video."""
        encoder = self.latent_dim * self.dim + self.dim * self.dim + self.classes * self.latent_dim
        video = self.max_length * (4 * self.latent_dim + 2 * self.classes + 2 * self.dim)
        return 8.0 * (encoder + 2 * self.videos + video)

    def disk_bytes(self) -> float:
        """About the bytes of the float32 features written (mean length x dim per video)."""
        return 4.0 * self.videos * (self.min_length + self.max_length) / 2 * self.dim


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth `(T, D)` along time with a Gaussian of `sigma` snippets (zero padding, same length)."""
    if sigma <= 0:
        return x
    radius = int(np.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    length = x.shape[0]
    size = length + 2 * radius
    spectrum = np.fft.rfft(x, n=size, axis=0) * np.fft.rfft(kernel, n=size)[:, None]
    return np.fft.irfft(spectrum, n=size, axis=0)[radius : radius + length]


def sample_segments(length: int, config: SyntheticConfig, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Action segments `(start, end, class)` in snippets (end exclusive), with background between."""
    segments = []
    cursor = int(rng.integers(config.min_gap, config.max_gap + 1))
    while cursor + config.min_action <= length - config.min_gap:
        longest = min(config.max_action, length - config.min_gap - cursor)
        end = cursor + int(rng.integers(config.min_action, longest + 1))
        segments.append((cursor, end, int(rng.integers(config.classes))))
        cursor = end + int(rng.integers(config.min_gap, config.max_gap + 1))
    if not segments:  # a short video still gets one action
        start = (length - config.min_action) // 2
        segments.append((start, start + config.min_action, int(rng.integers(config.classes))))
    return segments


def _check_synth(config: "SynthSections") -> None:
    synth = config.synth.validate()
    keys = ["synth.videos", "synth.dim", "synth.classes", "synth.max_length", "synth.latent_dim"]
    require_config_memory(config, synth.peak_bytes(), keys, "the encoder and the arrays of the longest video")


class SynthSections(SectionedConfig, check=_check_synth):
    """`SyntheticConfig` as a sectioned config (section `synth`): what `sola synth --config/--set` reads."""

    synth: SyntheticConfig


class SyntheticEncoder:
    """The fixed random nonlinear map latent `(T, D)` -> features `(T, C)` shared by all videos."""

    def __init__(self, latent_dim: int, dim: int, rng: np.random.Generator) -> None:
        self.first = rng.standard_normal((latent_dim, dim)) / np.sqrt(latent_dim)
        self.bias = 0.1 * rng.standard_normal(dim)
        self.second = rng.standard_normal((dim, dim)) / np.sqrt(dim)

    def __call__(self, latent: np.ndarray) -> np.ndarray:
        return (np.tanh(latent @ self.first + self.bias) @ self.second).astype(np.float32)


def synthesize_video(
    length: int,
    config: SyntheticConfig,
    prototypes: np.ndarray,
    encoder: SyntheticEncoder,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """One video: features `(length, dim)` float32 and its segments `(start, end, class)` in snippets."""
    d = config.latent_dim
    segments = sample_segments(length, config, rng)
    evidence = np.zeros((length, config.classes))
    for start, end, label in segments:
        evidence[start:end, label] = 1.0
    evidence = gaussian_smooth(evidence, config.blur)  # (T, K): soft boundaries
    context = config.context_scale * rng.standard_normal(d)
    drift = gaussian_smooth(rng.standard_normal((length, d)), 25.0)
    drift *= config.drift_scale / (drift.std() + 1e-8)
    motion = gaussian_smooth(rng.standard_normal((length, d)), config.motion_smoothing)
    motion *= config.motion_scale / (motion.std() + 1e-8)
    noise = gaussian_smooth(rng.standard_normal((length, d)), config.noise_smoothing)
    noise *= config.noise_scale / (noise.std() + 1e-8)
    latent = context + drift + motion + config.prototype_scale * evidence @ prototypes + noise  # (T, D)
    return encoder(latent), segments


def write_synthetic(out_dir: str | os.PathLike, config: SyntheticConfig | None = None, progress: bool = True) -> dict:
    """Write the benchmark: `OUT/features/*.npy` and `OUT/annotations.json`; returns a summary.

    Deterministic in `config.seed`; rerunning with the same config rewrites identical files, and
    videos of an earlier, larger benchmark in `out_dir` are removed. Raises `ConfigError` (writing
    nothing) when `OUT/features` holds `.npy` files that no `sola synth` wrote.
    """
    config = SynthSections(synth=config or SyntheticConfig()).validate().synth
    out_dir = Path(out_dir)
    require_disk(config.disk_bytes(), out_dir, f"synth.videos={config.videos} x synth.dim={config.dim}",
                 "lower synth.videos or synth.dim, or write to another disk")
    features = out_dir / "features"
    found = sorted(features.glob("*.npy")) if features.is_dir() else []
    foreign = [p.name for p in found if not re.fullmatch(r"synth_\d{4,}\.npy", p.name)]
    if foreign:
        raise ConfigError(
            f"{features} holds {len(foreign)} feature file(s) that `sola synth` did not write (e.g. {foreign[0]}); "
            "choose a new directory"
        )
    names = {f"synth_{index:04d}.npy" for index in range(config.videos)}
    for stale in (p for p in found if p.name not in names):  # an earlier benchmark's: not part of this one
        stale.unlink()
    rng = np.random.default_rng(config.seed)
    world = np.random.default_rng([config.seed, 1])  # the encoder and classes, fixed per seed
    prototypes = world.standard_normal((config.classes, config.latent_dim))
    encoder = SyntheticEncoder(config.latent_dim, config.dim, world)
    lengths = rng.integers(config.min_length, config.max_length + 1, size=config.videos)
    order = rng.permutation(config.videos)
    num_validation = max(1, int(round(config.videos * config.validation_fraction)))
    validation = set(order[:num_validation].tolist())
    seconds_per_snippet = config.feat_stride / config.fps
    writer = NpyWriter(out_dir / "features")
    database, num_segments = {}, 0
    for index in tqdm(range(config.videos), desc="synth", unit="video", disable=not progress or None):
        video_id = f"synth_{index:04d}"
        features, segments = synthesize_video(int(lengths[index]), config, prototypes, encoder, rng)
        writer.write(video_id, features)
        num_segments += len(segments)
        database[video_id] = {
            "subset": "validation" if index in validation else "training",
            "duration": round(len(features) * seconds_per_snippet, 6),
            "fps": config.fps,
            "feat_stride": config.feat_stride,
            "num_frames": config.num_frames,
            "annotations": [
                {
                    "label": f"class_{label:02d}",
                    "label_id": label,
                    "segment": [round(start * seconds_per_snippet, 6), round(end * seconds_per_snippet, 6)],
                }
                for start, end, label in segments
            ],
        }
    annotations = {"version": "sola-synthetic-1", "config": asdict(config), "database": database}
    atomic_write_text(out_dir / "annotations.json", json_text(annotations, indent=1))
    return {
        "videos": config.videos,
        "validation_videos": num_validation,
        "segments": num_segments,
        "snippets": int(lengths.sum()),
        "dim": config.dim,
        "features": str(out_dir / "features"),
        "annotations": str(out_dir / "annotations.json"),
    }
