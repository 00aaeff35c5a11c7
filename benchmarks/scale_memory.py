"""Peak memory of every stage on HACS-shaped stores of two sizes: it must not grow with the store.

Writes synthetic stores shaped like the HACS Segments I3D features (2048-d float32, 100-480 snippets
per video, ActivityNet-style annotations with training/validation subsets) of each size, then runs
each stage in a fresh process and reads that process's peak RSS (`os.wait4`):

  train      `sola train` for 1 epoch (reference schedule: batch 256, one window per video)
  transform  `sola transform` of the whole store
  probe      `sola probe` (reference SGD protocol and the converged probe) with `--max-snippets N`
             (default 20,000 here, below both splits of a 2 GB store (its validation split holds about
             41,000 snippets), so that every size is capped; `--probe-snippets -1` keeps the library's
             defaults: 400,000 snippets and 750 MB of matrix per split, about 1.5 GB for both at any width)
  head       the TAL head: lazy items of every training video, then a fixed number of batches

Prints one row per (stage, size), the ratio of the largest to the smallest store per stage (1.15 at
most is the goal) and writes OUT/scale_memory.json.

    python benchmarks/scale_memory.py --sizes 2,16                   # GB of features per store
    python benchmarks/scale_memory.py --sizes 30 --stages train,transform,probe,head --keep
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

DIM = 2048
LENGTHS = (100, 480)  # HACS videos: up to 480 snippets
HEAD_SCRIPT = """
import sys
from sola.data.annotations import load_annotations
from sola.data.stores import open_store
from sola.tal.config import load_tal_config
from sola.tal.experiment import build_items, class_names, fit_config_to_data
from sola.tal.train import train_head

store, annotations = open_store(sys.argv[1]), load_annotations(sys.argv[2])
batches = int(sys.argv[3])
config = load_tal_config("activitynet_tsp", {"train.epochs": 1, "train.warmup_epochs": 0, "train.device": "cpu"})
names = class_names(annotations, config)
config = fit_config_to_data(config, store.dim(), len(names))
items = build_items(store, annotations, "training", config, names)  # every training video, lazily
train_head(items[: batches * config.train.batch_size], config, seed=0, progress=False)
print(len(items), "items")
"""


def make_store(root: Path, gigabytes: float, seed: int = 0) -> dict:
    """A HACS-shaped npy store of about `gigabytes` GB plus annotations; returns its summary."""
    rng = np.random.default_rng(seed)
    features = root / "features"
    features.mkdir(parents=True)
    block = rng.standard_normal((LENGTHS[1], DIM)).astype(np.float32)  # tiled: writing stays fast
    target, written, database, index = gigabytes * 1e9, 0, {}, 0
    while written < target:
        length = int(rng.integers(LENGTHS[0], LENGTHS[1] + 1))
        video_id = f"v_{index:06d}"
        shift = int(rng.integers(0, LENGTHS[1] - length + 1))
        np.save(features / f"{video_id}.npy", np.roll(block, shift, axis=0)[:length] + np.float32(index % 7))
        written += length * DIM * 4
        fps, stride = 15.0, 8.0  # the head's grid: snippets every 8 frames at 15 fps
        duration = length * stride / fps
        starts = np.sort(rng.uniform(0, duration * 0.8, size=int(rng.integers(1, 4))))
        database[video_id] = {
            "subset": "validation" if index % 6 == 0 else "training", "duration": duration, "fps": fps,
            "feat_stride": stride, "num_frames": 16,
            "annotations": [{"label": f"class_{int(rng.integers(200))}",
                             "segment": [float(s), float(min(s + rng.uniform(2, 20), duration))]} for s in starts],
        }
        index += 1
    (root / "annotations.json").write_text(json.dumps({"version": "HACS-shaped", "database": database}))
    return {"videos": index, "gigabytes": round(written / 1e9, 2)}


def peak_rss(command: list[str]) -> tuple[float, float, str]:
    """Run `command` in a fresh process; return (its peak RSS in MB, seconds, the tail of its output)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")})
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output[-3000:]}")
    return usage.ru_maxrss / 1024, time.perf_counter() - started, output.strip().splitlines()[-1:] or [""]


def write_adapter(path: Path) -> Path:
    """A fresh 2048-d adapter with an open gate, for a transform run without the train stage."""
    import torch

    from sola.adapt.adapter import SoLaAdapter, save_adapter

    adapter = SoLaAdapter(DIM)
    with torch.no_grad():
        adapter.alpha.fill_(0.5)
    return save_adapter(adapter, path)


def stage_commands(root: Path, stage: str, batches: int, probe_snippets: int = 20_000) -> list[str]:
    """The command of one stage on the store in `root`."""
    sola = [sys.executable, "-m", "sola"]
    store, annotations = str(root / "features"), str(root / "annotations.json")
    if stage == "train":
        return [*sola, "train", store, "--out", str(root / "run"), "--epochs", "1", "--device", "cpu", "--quiet"]
    if stage == "transform":
        adapter = root / "run" if (root / "run").is_dir() else write_adapter(root / "adapter.safetensors")
        return [*sola, "transform", store, "--adapter", str(adapter), "--out", str(root / "sola"),
                "--device", "cpu", "--quiet"]
    if stage == "probe":  # probe_snippets < 0: the library's default caps
        cap = ["--max-snippets", str(probe_snippets)] if probe_snippets >= 0 else []
        return [*sola, "probe", store, "--annotations", annotations, *cap, "--quiet"]
    if stage == "head":
        script = root / "head.py"
        script.write_text(textwrap.dedent(HEAD_SCRIPT))
        return [sys.executable, str(script), store, annotations, str(batches)]
    raise SystemExit(f"unknown stage {stage!r}; choose among train, transform, probe, head")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="2,16", help="comma list of store sizes in GB")
    parser.add_argument("--stages", default="train,transform,probe,head")
    parser.add_argument("--head-batches", type=int, default=8, help="TAL head batches to train")
    parser.add_argument("--probe-snippets", type=int, default=20_000,
                        help="the probe's --max-snippets (-1: the library's defaults, both caps)")
    parser.add_argument("--out", default="bench_out/scale_memory")
    parser.add_argument("--keep", action="store_true", help="keep the stores (they are large)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    rows = []
    for size in [float(s) for s in args.sizes.split(",")]:
        root = out / f"store_{size:g}GB"
        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        summary = make_store(root, size)
        print(f"store {size:g} GB: {summary['videos']} videos ({summary['gigabytes']} GB) written in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        try:
            for stage in stages:
                rss, seconds, tail = peak_rss(stage_commands(root, stage, args.head_batches, args.probe_snippets))
                rows.append({"stage": stage, "size_gb": summary["gigabytes"], "videos": summary["videos"],
                             "peak_rss_mb": round(rss), "seconds": round(seconds, 1)})
                print(f"  {stage:9s} peak RSS {rss:8.0f} MB  {seconds:7.1f} s   {tail[0][:90]}", flush=True)
        finally:
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
    print("\nstage      " + "  ".join(f"{row['size_gb']:>7g} GB" for row in rows if row["stage"] == stages[0])
          + "   largest/smallest")
    for stage in stages:
        mine = [row["peak_rss_mb"] for row in rows if row["stage"] == stage]
        print(f"{stage:9s}  " + "  ".join(f"{value:7d} MB" for value in mine)
              + f"   x{max(mine) / min(mine):.2f}")
    (out / "scale_memory.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
