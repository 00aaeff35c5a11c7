"""Training seconds per epoch and peak memory of the TAL head on a THUMOS14-shaped input.

THUMOS14 as ActionFormer trains on it: 413 videos (the validation set) of about 2,300 snippets of
2048-d I3D features, batch 2, random truncation to 2,304 snippets. The feature values here are
synthetic (seeded Gaussian noise) with random ground-truth actions, so the numbers measure compute,
not accuracy. With `--videos N` only N videos are trained for one epoch and the epoch time is
extrapolated linearly to 413 videos (stated as such in the output).

    python benchmarks/tal_epoch.py --videos 8            # CPU, extrapolated
    python benchmarks/tal_epoch.py --device cuda          # a full epoch on a GPU

Peak memory: the process's peak resident set size (CPU) or `torch.cuda.max_memory_allocated`
(GPU). Features are slices of a small shared pool, so the dataset itself is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

THUMOS14_TRAIN_VIDEOS = 413


class SyntheticThumos:
    """A lazy sequence of head items shaped like THUMOS14 I3D features (T ~ 2,300, C = 2048)."""

    def __init__(self, videos: int, length: int, dim: int, classes: int, seed: int = 0) -> None:
        import torch

        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)
        self.pool = [torch.randn(int(length * 1.2), dim, generator=generator) for _ in range(4)]
        self.lengths = rng.integers(int(length * 0.8), int(length * 1.2), size=videos)
        self.segments, self.labels = [], []
        for n in self.lengths:  # about 15 actions per video, 10 to 100 snippets long
            starts = np.sort(rng.uniform(0, n - 100, size=15))
            self.segments.append(torch.tensor(np.stack([starts, starts + rng.uniform(10, 100, 15)], 1), dtype=torch.float32))
            self.labels.append(torch.tensor(rng.integers(0, classes, 15)))

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, index: int) -> dict:
        n = int(self.lengths[index])
        return {"feats": self.pool[index % len(self.pool)][:n], "segments": self.segments[index],
                "labels": self.labels[index], "video_id": f"video_{index:04d}", "fps": 30.0, "feat_stride": 4.0,
                "num_frames": 16.0, "duration": (n * 4 + 16) / 30.0}

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=THUMOS14_TRAIN_VIDEOS,
                        help="videos to train on (fewer than 413: the epoch time is extrapolated)")
    parser.add_argument("--length", type=int, default=2300, help="mean snippets per video")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "thumos14_i3d.yaml"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)

    import torch

    from sola.core.devices import resolve_device
    from sola.tal.config import load_tal_config
    from sola.tal.train import train_head

    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_tal_config(args.config, {"data.input_dim": args.dim, "train.epochs": 1, "train.warmup_epochs": 0,
                                           "train.device": args.device})
    device = resolve_device(args.device)
    data = SyntheticThumos(args.videos, args.length, args.dim, config.data.num_classes)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = train_head(data, config, seed=0, progress=None)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    epoch = result.history[0]["seconds"]
    steps = max(len(data) // config.train.batch_size, 1)
    full_steps = THUMOS14_TRAIN_VIDEOS // config.train.batch_size
    extrapolated = epoch / steps * full_steps
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
        memory_kind = "GPU max_memory_allocated"
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        memory_kind = "CPU peak RSS"
    figures = {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "videos_measured": len(data),
        "iterations_measured": steps,
        "seconds_measured_epoch": round(epoch, 2),
        "seconds_per_iteration": round(epoch / steps, 3),
        "seconds_per_epoch_413_videos": round(extrapolated, 1),
        "extrapolated": len(data) != THUMOS14_TRAIN_VIDEOS,
        "peak_memory_mib": round(peak_mib, 1),
        "peak_memory_kind": memory_kind,
        "wall_seconds_including_setup": round(wall, 1),
        # CPU time of all threads: on a busy machine the wall time overstates the cost; on N free
        # cores an epoch takes at least cpu_seconds_per_epoch_413_videos / N
        "cpu_seconds_per_epoch_413_videos": round(cpu / steps * full_steps, 1),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "batch_size": config.train.batch_size,
        "max_seq_len": config.data.max_seq_len,
    }
    how = (f"extrapolated from {len(data)} videos ({steps} iterations)" if figures["extrapolated"]
           else "measured on all 413 videos")
    print(f"THUMOS14-shaped epoch ({args.dim}-d, ~{args.length} snippets, batch {config.train.batch_size}) on "
          f"{figures['device']} with {figures['torch_threads']} threads: {extrapolated:.1f} s per epoch ({how}); "
          f"{epoch / steps:.2f} s per iteration; {memory_kind} {peak_mib:.0f} MiB")
    print(json.dumps(figures, indent=1))
    if args.json:
        from sola.core.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
