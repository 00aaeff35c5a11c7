"""Throughput of SoLa fitting and transform on a store shaped like HACS I3D features (2048-d).

Measures, in one run on the same data, interleaved batch by batch (medians):
  - window loading: memory-mapped (ours) vs np.load of the whole file per window (the reference's),
  - the optimiser step (batch 256, reference adapter and projector): the adapter run at the N=8
    gathered positions only (ours) vs over all L=23 snippets of the window (the reference's),
  - training windows/s both ways and their ratio, and fit_adapter end to end with and without
    batches read ahead in a thread (fit.prefetch),
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
import torch.nn.functional as F

from sola.adapt.adapter import SoLaAdapter
from sola.adapt.fit import fit_adapter
from sola.adapt.matching import SimilarityMatching, similarity_map
from sola.adapt.sampling import epoch_plan, open_window_source
from sola.adapt.transform import transform_store
from sola.core.config import SoLaConfig, load_config
from sola.data.stores import open_store


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
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    workdir = Path(tempfile.mkdtemp(prefix="sola_bench_"))
    try:
        snippets = make_store(workdir / "features", args.videos, args.dim)
        size_gb = sum(p.stat().st_size for p in (workdir / "features").iterdir()) / 1e9
        print(f"store: {args.videos} videos, {snippets} snippets x {args.dim} float32 ({size_gb:.2f} GB), "
              f"{args.threads} torch threads, device {device}")
        config = SoLaConfig()
        store = open_store(workdir / "features")
        data = open_window_source(store, config.matching.window)
        files = [store.file(v) for v in data.video_ids]
        torch.manual_seed(0)
        model = SimilarityMatching(SoLaAdapter(args.dim), config.matching).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
        window = config.matching.window
        videos, starts = epoch_plan(data.lengths, window, -(-args.steps * args.batch // len(data.lengths)), 0, 0)
        batches = [(videos[i : i + args.batch], starts[i : i + args.batch])
                   for i in range(0, args.steps * args.batch, args.batch)]

        def gathered_loss(windows: torch.Tensor) -> torch.Tensor:
            return model(windows)  # the adapter runs at the N gathered positions only

        def full_window_loss(windows: torch.Tensor) -> torch.Tensor:
            # The reference way: adapt all L snippets of the window, then gather N of them.
            z = F.normalize(model.adapter(windows)[:, model.positions], dim=-1)
            predicted = similarity_map(z, model.projector(z), config.matching.clamp_eps)
            return F.binary_cross_entropy(predicted, model.target.expand_as(predicted))

        def step(loss_fn, windows: np.ndarray) -> None:
            loss = loss_fn(torch.from_numpy(windows).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()

        loaders = {
            "mmap (sola)": lambda v, s: data.batch(v, s, window),
            "reload per window (reference)": lambda v, s: naive_batch(files, v, s, window).astype(np.float32),
        }
        steps = {"gathered positions (sola)": gathered_loss, "full window (reference)": full_window_loss}
        for load in loaders.values():  # warm-up: page cache, allocator
            for loss_fn in steps.values():
                step(loss_fn, load(*batches[0]))
        load_times = {name: [] for name in loaders}
        step_times = {name: [] for name in steps}
        for v, s in batches:  # interleaved, so a change in machine load hits every method alike
            for name, load in loaders.items():
                t0 = time.perf_counter()
                windows = load(v, s)
                load_times[name].append(time.perf_counter() - t0)
            for name, loss_fn in steps.items():
                t0 = time.perf_counter()
                step(loss_fn, windows)
                step_times[name].append(time.perf_counter() - t0)
        rate = {name: args.batch / float(np.median(times)) for name, times in {**load_times, **step_times}.items()}
        for name in loaders:
            print(f"window loading, {name:32s} {rate[name]:10.1f} windows/s")
        for name in steps:
            print(f"optimiser step, {name:32s} {rate[name]:10.1f} windows/s")
        ours = 1 / (1 / rate["mmap (sola)"] + 1 / rate["gathered positions (sola)"])
        naive = 1 / (1 / rate["reload per window (reference)"] + 1 / rate["full window (reference)"])
        print(f"training, sola: {ours:.1f} windows/s; reference way: {naive:.1f} windows/s; ratio x{ours / naive:.2f}")
        print(f"  (loading x{rate['mmap (sola)'] / rate['reload per window (reference)']:.1f}, "
              f"step x{rate['gathered positions (sola)'] / rate['full window (reference)']:.2f})")

        # The real loop end to end (sola.adapt.fit.fit_adapter: sampling, loading, steps, logging), one epoch,
        # with batches read in the training loop (fit.prefetch 0) and read ahead in a thread (the default).
        per_video = max(1, args.steps * args.batch // len(data.lengths))
        windows_done = per_video * len(data.lengths)
        end_to_end = {}
        for prefetch in (0, 2):
            fit_config = load_config(None, {"fit.epochs": 1, "fit.windows_per_video": per_video,
                                            "fit.device": str(device), "fit.prefetch": prefetch})
            t0 = time.perf_counter()
            fit_adapter(store, fit_config, progress=False, log=lambda line: None)
            end_to_end[prefetch] = windows_done / (time.perf_counter() - t0)
            print(f"fit_adapter end to end, fit.prefetch={prefetch}: {end_to_end[prefetch]:.1f} windows/s "
                  f"({windows_done} windows)")
        print(f"  read-ahead vs inline: x{end_to_end[2] / end_to_end[0]:.2f}")

        adapter = model.adapter.eval()
        with torch.no_grad():
            adapter.alpha.fill_(0.5)
        t0 = time.perf_counter()
        transform_store(adapter, store, workdir / "out", device=str(device), progress=False)
        seconds = time.perf_counter() - t0
        print(f"transform: {snippets / seconds:.0f} snippets/s ({snippets} snippets in {seconds:.1f} s, "
              "read + adapter + atomic write)")
        print(f"peak RSS: {peak_rss_mb():.0f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
