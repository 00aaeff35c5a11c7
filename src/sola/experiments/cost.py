"""What SoLa costs, measured, against re-training the snippet encoder (`sola cost`).

SoLa trains a small temporal adapter on frozen features; TSP, BSP and PAL instead re-train the snippet
encoder, which costs a forward and a backward pass of the video network per snippet. Both are measured
here on this machine with the code that runs them:

- parameters (the adapter alone is what a head uses; training adds the projector);
- FLOPs (`torch.utils.flop_counter.FlopCounterMode`, a multiply-add = 2 FLOPs): the adapter's forward per
  snippet, and one training step per window (forward + backward of the Similarity Matching loss, which
  runs the adapter at the gathered positions only);
- activation memory: the bytes autograd saves for the backward pass (`saved_tensors_hooks`, each
  storage counted once), per window; peak training memory is CUDA's `max_memory_allocated` on a GPU and,
  on the CPU, the sum weights + gradients + AdamW state + saved activations + the batch (no allocator
  on the CPU reports a peak);
- seconds per 1,000 training windows (median of timed steps after a warm-up).

The encoder row is our Kinetics-400 Inception-I3D (RGB stream, random weights: the cost does not depend
on them) fine-tuned on 16-frame 224x224 clips, one clip per snippet; a window of `matching.window`
snippets needs that many clips, so its per-window figures are the clip's times that count. A two-stream
encoder (2048-d features) has a second, flow network of the same shape on top, plus optical flow.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from sola.adapt.adapter import SoLaAdapter
from sola.adapt.matching import SimilarityMatching
from sola.core.config import (AdapterConfig, FitConfig, MatchingConfig, SoLaConfig, check_geometry, check_ranges,
                              fit_bytes)
from sola.core.errors import ConfigError
from sola.core.memory import require_memory
from sola.extract.i3d import InceptionI3d

ADAM_STATE = 2  # AdamW keeps two moments per parameter


@dataclass
class Cost:
    """One row of the cost table; FLOPs and bytes are per snippet or per window as named."""

    name: str
    device: str
    parameters: int  # used at inference
    trainable: int  # updated in training (the adapter's projector included)
    forward_flops_per_snippet: float
    train_flops_per_window: float  # forward + backward
    activation_bytes_per_window: float
    peak_train_bytes: float  # of one training step at `batch` windows (or clips)
    peak_is_measured: bool  # CUDA's allocator peak; else the sum described in the module docstring
    seconds_per_1000_windows: float
    batch: int  # windows (adapter) or clips (encoder) per measured step

    def to_dict(self) -> dict:
        """Plain dict (for JSON)."""
        return asdict(self)


def count_flops(run) -> int:
    """FLOPs of everything `run()` computes (forward and, if it calls backward, backward)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return int(counter.get_total_flops())


def saved_bytes(run) -> int:
    """Bytes autograd saves for the backward pass while `run()` builds its graph (each storage once)."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(storages.values())


def median_seconds(step, device: torch.device, repeats: int) -> float:
    """Median wall seconds of `step()` over `repeats` runs after one warm-up run."""
    step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _peak(step, device: torch.device, fallback: float) -> tuple[float, bool]:
    """CUDA's peak allocation over one `step()`, or `fallback` (not measured) on the CPU."""
    if device.type != "cuda":
        return fallback, False
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return float(torch.cuda.max_memory_allocated(device)), True


def _bytes(parameters) -> int:
    return sum(p.numel() * p.element_size() for p in parameters)


def _training_figures(model: torch.nn.Module, loss, inputs: torch.Tensor, device: torch.device,
                      repeats: int) -> tuple[float, float, float, bool, float]:
    """One AdamW training step of `loss()` on `model`, measured: `(FLOPs of forward + backward, saved
    activation bytes, peak bytes, whether the peak is measured, median seconds)`, all for the whole batch."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()

    flops = count_flops(lambda: loss().backward())
    activations = saved_bytes(loss)
    optimizer.zero_grad(set_to_none=True)
    estimate = _bytes(model.parameters()) * (2 + ADAM_STATE) + activations + inputs.numel() * inputs.element_size()
    peak, measured = _peak(step, device, estimate)
    return flops, activations, peak, measured, median_seconds(step, device, repeats)


def adapter_cost(dim: int, hidden: int = 512, kernel: int = 5, dilation: int = 1,
                 matching: MatchingConfig | None = None, batch: int = 256, device: str = "cpu",
                 repeats: int = 5) -> Cost:
    """The SoLa adapter: inference FLOPs per snippet and one Similarity Matching training step of
    `batch` windows (AdamW). Raises `ConfigError` for sizes that cannot form an adapter."""
    for name, value in (("--dim", dim), ("--hidden", hidden), ("--kernel", kernel), ("--dilation", dilation),
                        ("--batch-size", batch), ("--repeats", repeats)):
        if value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    if kernel % 2 == 0:
        raise ConfigError(f"--kernel must be odd for symmetric 'same' padding, got {kernel}")
    matching = matching or MatchingConfig()
    # `sola train`'s checks of the same values: the ranges, the geometry of the window, the memory
    config = SoLaConfig(adapter=AdapterConfig(hidden, kernel, dilation), matching=matching,
                        fit=FitConfig(batch_size=batch, prefetch=0, health_windows=1))
    try:
        check_ranges(config)
        check_geometry(config.adapter, matching)
    except ConfigError as exc:
        raise ConfigError(_flags(str(exc))) from None
    require_memory(fit_bytes(dim, config), f"--dim {dim} --hidden {hidden} --kernel {kernel} --batch-size {batch} "
                   f"(one training step of {batch} windows of {matching.window} snippets)", "lower them")
    device = torch.device(device)
    torch.manual_seed(0)
    adapter = SoLaAdapter(dim, hidden, kernel, dilation)
    model = SimilarityMatching(adapter, matching).to(device)
    windows = torch.randn(batch, matching.window, dim, device=device)
    length = 1024
    with torch.no_grad():
        snippets = torch.randn(1, length, dim, device=device)
        forward = count_flops(lambda: adapter(snippets)) / length
    train, activations, peak, measured, seconds = _training_figures(model, lambda: model(windows), windows,
                                                                    device, repeats)
    return Cost(
        name=f"SoLa adapter (C={dim}, H={hidden}, k={kernel}, d={dilation})", device=str(device),
        parameters=sum(p.numel() for p in adapter.parameters()),
        trainable=sum(p.numel() for p in model.parameters()),
        forward_flops_per_snippet=forward, train_flops_per_window=train / batch,
        activation_bytes_per_window=activations / batch,
        peak_train_bytes=peak, peak_is_measured=measured, seconds_per_1000_windows=1000 * seconds / batch,
        batch=batch,
    )


def encoder_cost(frames: int = 16, size: int = 224, window: int = MatchingConfig.window, device: str = "cpu",
                 repeats: int = 1, batch: int = 1) -> Cost:
    """Fine-tuning our Inception-I3D (RGB) on `batch` clips of `frames` x `size` x `size` per step
    (AdamW, every weight trained): per snippet = per clip; per window = `window` clips."""
    for name, value in (("--frames", frames), ("--size", size), ("window", window), ("--repeats", repeats)):
        if value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value}")
    clip = batch * 3 * frames * size * size  # the I3D's input, and its first feature map: 64 channels at 1/8 the size
    require_memory(4.0 * (clip + clip * 64 / 3 / 8), f"--frames {frames} --size {size} (one clip of {frames} frames "
                   f"of {size}x{size} and its first feature map)", "lower them")
    device = torch.device(device)
    torch.manual_seed(0)
    model = InceptionI3d().to(device).train()
    clips = torch.rand(batch, 3, frames, size, size, device=device) * 2 - 1

    def loss() -> torch.Tensor:
        features, logits = model(clips)
        return logits.logsumexp(dim=1).mean()  # any scalar of the logits: the cost of the graph is the same

    with torch.no_grad():
        forward = count_flops(lambda: model(clips)) / batch
    train, activations, peak, measured, seconds = _training_figures(model, loss, clips, device, repeats)
    count = sum(p.numel() for p in model.parameters())
    return Cost(
        name=f"I3D fine-tuning (RGB, {frames}x{size}x{size} per snippet)", device=str(device),
        parameters=count, trainable=count, forward_flops_per_snippet=forward,
        train_flops_per_window=train / batch * window, activation_bytes_per_window=activations / batch * window,
        peak_train_bytes=peak, peak_is_measured=measured,
        seconds_per_1000_windows=1000 * window * seconds / batch, batch=batch,
    )


_FLAGS = {"adapter.hidden_dim": "--hidden", "adapter.kernel_size": "--kernel", "adapter.dilation": "--dilation",
          "fit.batch_size": "--batch-size"}


def _flags(message: str) -> str:
    """A config message in the words of `sola cost`'s flags."""
    for key, flag in _FLAGS.items():
        message = message.replace(key, flag)
    return message


def format_cost_table(rows: list[Cost]) -> str:
    """A Markdown table of cost rows, with each encoder row's ratio to the adapter row of its device."""
    lines = ["| method | device | params | trainable | fwd GFLOPs/snippet | train GFLOPs/window | "
             "activations MB/window | peak train MB | s / 1,000 windows |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        peak = f"{row.peak_train_bytes / 1e6:,.1f} ({'' if row.peak_is_measured else 'sum, '}batch {row.batch})"
        lines.append(f"| {row.name} | {row.device} | {row.parameters:,} | {row.trainable:,} | "
                     f"{row.forward_flops_per_snippet / 1e9:.4g} | {row.train_flops_per_window / 1e9:.4g} | "
                     f"{row.activation_bytes_per_window / 1e6:.4g} | {peak} | {row.seconds_per_1000_windows:.4g} |")
    notes = []
    for device in dict.fromkeys(row.device for row in rows):
        adapter = next((r for r in rows if r.device == device and r.name.startswith("SoLa")), None)
        for row in rows:
            if adapter is not None and row.device == device and row is not adapter:
                notes.append(f"{device}: the encoder costs x{row.train_flops_per_window / adapter.train_flops_per_window:,.0f} "
                             f"the training FLOPs per window, x{row.seconds_per_1000_windows / adapter.seconds_per_1000_windows:,.0f} "
                             f"the seconds and x{row.activation_bytes_per_window / adapter.activation_bytes_per_window:,.0f} "
                             "the activation memory of the adapter")
    return "\n".join(lines + ([""] + notes if notes else []))
