"""Throughput of SoLa fitting and transform on a store shaped like HACS I3D features (2048-d).

Measures, in one run on the same data:
  - training windows/s of our fit step (memory-mapped windows, batch 256, reference adapter),
  - the same adapter step fed the way the reference does it (np.load of the whole file per window),
  - window loading alone both ways (the part the two differ in),
  - transform snippets/s, and the peak RSS of the process.

    python benchmarks/fit_throughput.py [--videos 96] [--steps 6] [--dim 2048]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sola.adapter import SoLaAdapter
from sola.config import SoLaConfig
from sola.matching import SimilarityMatching
from sola.sampling import epoch_plan, open_window_source
from sola.stores import open_store
from sola.transform import transform_store


def make_store(root: Path, videos: int, dim: int, seed: int = 0) -> int:
    """HACS-like store: lengths 100-600 snippets, float32; returns the number of snippets."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    total = 0
    for index in range(videos):
        length = int(rng.integers(100, 601))
        np.save(root / f"v_{index:05d}.npy", rng.standard_normal((length, dim), dtype=np.float32))
        total += length
    return total


def naive_batch(files: list[Path], videos: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """The reference's way: load each video's whole file for every window."""
    return np.stack([np.load(files[v])[s : s + window] for v, s in zip(videos.tolist(), starts.tolist())])


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=96)
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps timed per method")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = Path(tempfile.mkdtemp(prefix="sola_bench_"))
    try:
        snippets = make_store(workdir / "features", args.videos, args.dim)
        size_gb = sum(p.stat().st_size for p in (workdir / "features").iterdir()) / 1e9
        print(f"store: {args.videos} videos, {snippets} snippets x {args.dim} float32 ({size_gb:.2f} GB), "
              f"{args.threads} torch threads")
        config = SoLaConfig()
        store = open_store(workdir / "features")
        data = open_window_source(store, config.matching.window)
        files = [store.file(v) for v in data.video_ids]
        torch.manual_seed(0)
        model = SimilarityMatching(SoLaAdapter(args.dim), config.matching)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
        window = config.matching.window
        videos, starts = epoch_plan(data.lengths, window, -(-args.steps * args.batch // len(data.lengths)), 0, 0)
        batches = [(videos[i : i + args.batch], starts[i : i + args.batch])
                   for i in range(0, args.steps * args.batch, args.batch)]

        def step(windows: np.ndarray) -> None:
            loss = model(torch.from_numpy(windows))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        results = {}
        for name, load in (("sola (mmap)", lambda v, s: data.batch(v, s, window)),
                           ("naive (reload per window)", lambda v, s: naive_batch(files, v, s, window).astype(np.float32))):
            step(load(*batches[0]))  # warm-up: page cache, allocator
            load_seconds = step_seconds = 0.0
            for v, s in batches:
                t0 = time.perf_counter()
                windows = load(v, s)
                t1 = time.perf_counter()
                step(windows)
                load_seconds += t1 - t0
                step_seconds += time.perf_counter() - t1
            count = args.steps * args.batch
            results[name] = (count / (load_seconds + step_seconds), count / load_seconds)
            print(f"{name:28s} training {results[name][0]:8.1f} windows/s   loading alone {results[name][1]:10.1f} windows/s")
        ours, naive = results["sola (mmap)"], results["naive (reload per window)"]
        print(f"ratio sola / naive: training x{ours[0] / naive[0]:.2f}, window loading x{ours[1] / naive[1]:.1f}")

        adapter = model.adapter.eval()
        with torch.no_grad():
            adapter.alpha.fill_(0.5)
        t0 = time.perf_counter()
        transform_store(adapter, store, workdir / "out", device="cpu", progress=False)
        seconds = time.perf_counter() - t0
        print(f"transform: {snippets / seconds:.0f} snippets/s ({snippets} snippets in {seconds:.1f} s, "
              "read + adapter + atomic write)")
        print(f"peak RSS: {peak_rss_mb():.0f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
