"""The TAL head trained by one process and by N processes under torchrun (gloo on the CPU): mAP side by side.

Writes the synthetic benchmark (`sola synth`, seed 0) once, then for each process count runs
`sola tal train` (the same config and seed; `train.batch_size` is the global batch, split over the
ranks), `sola tal infer` and `sola tal eval`, and prints the average mAP of each with the seconds it
took. The runs differ only in how each global batch is spread over processes, so the mAPs should agree
up to floating-point reduction order.

    python benchmarks/tal_ddp.py --out bench_out/tal_ddp                  # 1 vs 2 processes
    python benchmarks/tal_ddp.py --procs 1,2,4 --config tal_synthetic_cpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def sola(procs: int, *args: str) -> None:
    """Run `sola ARGS` in `procs` processes (torchrun when more than one); exit on failure."""
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    command = [*(launch if procs > 1 else [sys.executable]), "-m", "sola", *args]
    threads = str(max(1, (os.cpu_count() or 1) // procs))
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": threads})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_out/tal_ddp")
    parser.add_argument("--procs", default="1,2", help="comma list of process counts")
    parser.add_argument("--config", default="tal_synthetic_cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    out = Path(args.out)
    data = out / "data"
    if not (data / "annotations.json").is_file():
        sola(1, "synth", str(data), "--seed", "0")
    features, annotations = str(data / "features"), str(data / "annotations.json")
    rows = []
    for procs in [int(p) for p in args.procs.split(",")]:
        run = out / f"run_{procs}"
        evaluation = out / f"eval_{procs}.json"
        started = time.perf_counter()
        if not evaluation.is_file():
            sola(procs, "tal", "train", features, "--annotations", annotations, "--config", args.config,
                 "--seed", str(args.seed), "--out", str(run), "--quiet", "--set", "train.device=cpu")
            sola(procs, "tal", "infer", str(run), features, "--annotations", annotations, "--device", "cpu")
            sola(1, "tal", "eval", str(run), "--annotations", annotations, "--json", str(evaluation))
        result = json.loads(evaluation.read_text())
        rows.append({"processes": procs, "average_mAP": result["average_mAP"], "mAP": result["mAP"],
                     "seconds": round(time.perf_counter() - started, 1)})
        print(f"{procs} process(es): average mAP {100 * result['average_mAP']:.2f}  "
              f"(per tIoU {', '.join(f'{100 * m:.1f}' for m in result['mAP'])})  {rows[-1]['seconds']} s", flush=True)
    (out / "tal_ddp.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
