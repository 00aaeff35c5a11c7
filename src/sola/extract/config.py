"""Every default of `sola extract` and `sola classify` in one sectioned config (no torch, no PyAV here).

Three sections: `encoder` (the I3D's device and weights cache, shared by both commands), `extract`
(the snippet grid of `sola extract`: frame rate, window, stride, batch, decoding threads, output)
and `classify` (`sola classify`: Kinetics-style clips of 64 frames at 25 fps, top-k, the part of
the video looked at). Frame counts are of the resampled frames; times are in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from sola.core.config import COUNT, SIZE, SectionedConfig, ranged, require_config_memory
from sola.core.errors import ConfigError

OUTPUTS = {"features": 1024, "logits": 400}  # what `extract.output` may name, and its width
CROP = 224  # the I3D's input frames are CROP x CROP


def validate_extract_config(config: ExtractConfig) -> None:
    """Raise `ConfigError` naming the key for a value no range says, or for batches beyond this machine's memory
    (the checker of `ExtractConfig`; the range of each value is checked before, beside its field)."""
    e, x, c = config.encoder, config.extract, config.classify
    if not (e.device in ("auto", "cpu", "cuda") or e.device.startswith("cuda:")):
        raise ConfigError(f"encoder.device must be auto, cpu, cuda or cuda:N, got {e.device!r}")
    if x.output not in OUTPUTS:
        raise ConfigError(f"extract.output must be one of {', '.join(OUTPUTS)}, got {x.output!r}")
    for section, batch in (("extract", x), ("classify", c)):
        require_config_memory(config, clip_batch_bytes(batch.batch_size, batch.window),
                              [f"{section}.batch_size", f"{section}.window"], "one batch of 224x224 RGB frames")


def clip_batch_bytes(batch_size: int, window: int) -> float:
    """A lower bound of the bytes of one forward pass: the float32 frames and the I3D's first feature map
    (64 channels at half the frames, a quarter of the pixels)."""
    frames = batch_size * window * 3 * CROP * CROP
    return 4.0 * (frames + frames * 64 / 3 / 8)


@dataclass
class EncoderConfig:
    """The Kinetics-400 RGB I3D both commands run."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    cache: str | None = None  # weights cache directory; None: $SOLA_CACHE or ~/.cache/sola


@dataclass
class ExtractionConfig:
    """The snippet grid and throughput of `sola extract`."""

    fps: float | None = ranged(None, 0.0, 1000.0, above=True)  # resample frames to this rate; None: keep each video's own
    window: int = ranged(16, 1, SIZE)  # frames per snippet
    stride: int = ranged(16, 1, COUNT)  # frames between snippet starts
    batch_size: int = ranged(8, 1, SIZE)  # snippets per forward pass
    workers: int | None = ranged(None, 1, 1024)  # threads decoding videos; None: 8 on a GPU (decoding is the bottleneck), else 2
    output: str = "features"  # features (Mixed_5c averaged, 1024-d) | logits (the 400 Kinetics logits)


@dataclass
class ClassifyConfig:
    """The clips of `sola classify`: non-overlapping windows whose logits are averaged."""

    fps: float | None = ranged(25.0, 0.0, 1000.0, above=True)  # as Kinetics; None: the video's own rate
    window: int = ranged(64, 1, SIZE)  # frames per clip
    batch_size: int = ranged(2, 1, SIZE)  # clips per forward pass
    topk: int = ranged(5, 1, 400)  # classes reported
    start: float = ranged(0.0, 0.0, 1e7)  # seconds skipped at the start
    max_seconds: float | None = ranged(None, 0.0, 1e7, above=True)  # look at this many seconds only; None: to the end


class ExtractConfig(SectionedConfig, check=validate_extract_config):
    """Everything `sola extract` and `sola classify` use: encoder, extract, classify."""

    encoder: EncoderConfig
    extract: ExtractionConfig
    classify: ClassifyConfig
