"""Every default of `sola extract` and `sola classify` in one sectioned config (no torch, no PyAV here).

Three sections: `encoder` (the I3D's device and weights cache, shared by both commands), `extract`
(the snippet grid of `sola extract`: frame rate, window, stride, batch, decoding threads, output)
and `classify` (`sola classify`: Kinetics-style clips of 64 frames at 25 fps, top-k, the part of
the video looked at). Frame counts are of the resampled frames; times are in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sola.core.config import SectionedConfig
from sola.core.errors import ConfigError

OUTPUTS = {"features": 1024, "logits": 400}  # what `extract.output` may name, and its width


def validate_extract_config(config: ExtractConfig) -> None:
    """Raise `ConfigError` naming the key for a value out of range (the checker of `ExtractConfig`)."""
    e, x, c = config.encoder, config.extract, config.classify
    if not (e.device in ("auto", "cpu", "cuda") or e.device.startswith("cuda:")):
        raise ConfigError(f"encoder.device must be auto, cpu, cuda or cuda:N, got {e.device!r}")
    integers = {"extract.window": x.window, "extract.stride": x.stride, "extract.batch_size": x.batch_size,
                "extract.workers": 1 if x.workers is None else x.workers, "classify.window": c.window,
                "classify.batch_size": c.batch_size, "classify.topk": c.topk}
    for name, value in integers.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    for name, value in (("extract.fps", x.fps), ("classify.fps", c.fps), ("classify.max_seconds", c.max_seconds)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a finite number > 0 (or null), got {value}")
    if not (math.isfinite(c.start) and c.start >= 0):
        raise ConfigError(f"classify.start must be a finite number >= 0, got {c.start}")
    if x.output not in OUTPUTS:
        raise ConfigError(f"extract.output must be one of {', '.join(OUTPUTS)}, got {x.output!r}")


@dataclass
class EncoderConfig:
    """The Kinetics-400 RGB I3D both commands run."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N
    cache: str | None = None  # weights cache directory; None: $SOLA_CACHE or ~/.cache/sola


@dataclass
class ExtractionConfig:
    """The snippet grid and throughput of `sola extract`."""

    fps: float | None = None  # resample frames to this rate; None: keep each video's own
    window: int = 16  # frames per snippet
    stride: int = 16  # frames between snippet starts
    batch_size: int = 8  # snippets per forward pass
    workers: int | None = None  # threads decoding videos; None: 8 on a GPU (decoding is the bottleneck), else 2
    output: str = "features"  # features (Mixed_5c averaged, 1024-d) | logits (the 400 Kinetics logits)


@dataclass
class ClassifyConfig:
    """The clips of `sola classify`: non-overlapping windows whose logits are averaged."""

    fps: float | None = 25.0  # as Kinetics; None: the video's own rate
    window: int = 64  # frames per clip
    batch_size: int = 2  # clips per forward pass
    topk: int = 5  # classes reported
    start: float = 0.0  # seconds skipped at the start
    max_seconds: float | None = None  # look at this many seconds only; None: to the end


class ExtractConfig(SectionedConfig, check=validate_extract_config):
    """Everything `sola extract` and `sola classify` use: encoder, extract, classify."""

    encoder: EncoderConfig
    extract: ExtractionConfig
    classify: ClassifyConfig
