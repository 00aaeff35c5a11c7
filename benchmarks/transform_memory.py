"""Peak memory of `sola transform` on a feature store of several GB: bounded by the largest video.

Generates seeded random stores under a temporary directory in /tmp (deleted at the end):
  A  `--size-gb` of uniform videos (`--length` snippets x `--dim` channels, float32), npy layout;
  B  store A plus one long video (`--long-factor` times the others), npy layout (files hard-linked);
  H  store A as one HDF5 file (the layout written through sidecar parts and assembled at close).
Runs `sola transform` on each in a fresh process, resets the kernel's peak-RSS mark after the
imports, and prints the RSS after the imports, the peak RSS of the transform and their difference.
If memory followed the dataset, A and H would need several GB; bounded by the largest video, the
difference stays a small multiple of the largest video (B versus A).

    .venv/bin/python benchmarks/transform_memory.py [--size-gb 2.1] [--dim 1024] [--hidden 128]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Runs `sola transform` in-process after the imports, with the kernel's peak-RSS mark reset
# (`/proc/self/clear_refs` 5), so the peak is the transform's own, not the import's.
WRAPPER = """
import json, sys
import sola.cli, sola.data.stores, sola.adapt.transform, torch
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")
before = status("VmRSS:")
code = sola.cli.main(sys.argv[1:])
print(json.dumps({"code": code, "before": before, "peak": status("VmHWM:")}))
"""


def transform_peak(arguments: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run `sola transform ARGUMENTS` in a fresh process: RSS after imports, peak RSS (MB), seconds."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", WRAPPER, *arguments], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"failed: sola {' '.join(arguments)}\n{result.stderr}")
    facts = json.loads(result.stdout.strip().splitlines()[-1])
    return {**facts, "seconds": seconds}


def make_stores(root: Path, size_gb: float, length: int, dim: int, long_factor: int) -> dict[str, dict]:
    """Write stores A (npy), B (A + one long video, npy) and H (A as HDF5); return their facts."""
    from sola.data.stores.hdf5 import Hdf5Writer
    from sola.data.stores.npy import NpyWriter

    video_bytes = length * dim * 4
    count = int(np.ceil(size_gb * 1e9 / video_bytes))
    rng = np.random.default_rng(0)
    uniform, long_store = NpyWriter(root / "A"), NpyWriter(root / "B")
    h5 = Hdf5Writer(root / "H.h5")
    for i in range(count):
        video = rng.standard_normal((length, dim), dtype=np.float32)
        uniform.write(f"vid{i:05d}", video)
        os.link(root / "A" / f"vid{i:05d}.npy", root / "B" / f"vid{i:05d}.npy")
        h5.write(f"vid{i:05d}", video)
    h5.close()
    long_video = rng.standard_normal((length * long_factor, dim), dtype=np.float32)
    long_store.write("long", long_video)

    def size(path: Path) -> int:
        if path.is_file():
            return path.stat().st_size
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())

    largest = video_bytes / 1e6
    return {
        "npy": {"path": root / "A", "videos": count, "bytes": size(root / "A"), "largest_mb": largest},
        "npy + long video": {
            "path": root / "B", "videos": count + 1, "bytes": size(root / "B"), "largest_mb": largest * long_factor,
        },
        "hdf5": {"path": root / "H.h5", "videos": count, "bytes": size(root / "H.h5"), "largest_mb": largest},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=2.1, help="size of store A (GB, 1e9 bytes)")
    parser.add_argument("--length", type=int, default=4096, help="snippets per uniform video")
    parser.add_argument("--dim", type=int, default=1024, help="feature dimension C")
    parser.add_argument("--hidden", type=int, default=128, help="adapter hidden dim H (reference: 512)")
    parser.add_argument("--long-factor", type=int, default=16, help="length of the long video / --length")
    parser.add_argument("--threads", default="2", help="OMP_NUM_THREADS of the transform processes")
    parser.add_argument("--tmp", default="/tmp", help="where to generate the stores (deleted afterwards)")
    args = parser.parse_args()

    import torch

    from sola.adapt.adapter import SoLaAdapter, save_adapter

    root = Path(tempfile.mkdtemp(prefix="sola-transform-memory-", dir=args.tmp))
    env = {**os.environ, "OMP_NUM_THREADS": args.threads}
    try:
        started = time.perf_counter()
        stores = make_stores(root, args.size_gb, args.length, args.dim, args.long_factor)
        print(f"generated the stores in {time.perf_counter() - started:.0f} s under {root}")
        torch.manual_seed(0)
        adapter = SoLaAdapter(args.dim, hidden_dim=args.hidden)
        with torch.no_grad():
            adapter.alpha.fill_(0.5)
        save_adapter(adapter, root / "adapter.safetensors")
        print(f"adapter: C={args.dim}, H={args.hidden}, k=5; OMP_NUM_THREADS={args.threads}")
        print(f"{'store':<18}{'videos':>8}{'size GB':>9}{'largest MB':>12}{'RSS after imports':>19}"
              f"{'peak RSS MB':>13}{'peak - imports':>16}{'seconds':>9}")
        for name, facts in stores.items():
            out = root / f"out-{name.replace(' ', '-')}{'.h5' if name == 'hdf5' else ''}"
            run = transform_peak(
                ["transform", str(facts["path"]), "--adapter", str(root / "adapter.safetensors"),
                 "--out", str(out), "--device", "cpu", "--quiet"],
                env,
            )
            print(
                f"{name:<18}{facts['videos']:>8}{facts['bytes'] / 1e9:>9.2f}{facts['largest_mb']:>12.0f}"
                f"{run['before']:>19.0f}{run['peak']:>13.0f}{run['peak'] - run['before']:>16.0f}{run['seconds']:>9.1f}"
            )
            shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        print(f"deleted {root}")


if __name__ == "__main__":
    main()
