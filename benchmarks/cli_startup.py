"""Whole-process seconds of the light commands: `sola --help` and `sola eval-detection`.

Each command runs in a fresh interpreter (`python -m sola ...`, what the `sola` script does), several
times; the best wall time and the CPU time of that run are printed (on a shared machine the wall
clock also counts waiting for a core, so the CPU seconds are the steadier figure), beside the
figures before issue 23, when every command imported torch.

Cases: `sola --help`; `sola eval-detection` on the THUMOS14 oracle (`../shared/data/eval_oracle/
thumos14`); and at ActivityNet scale, a seeded ground truth and prediction file of ActivityNet v1.3's
validation size (4,728 videos, 198,576 predictions, 200 classes; `benchmarks/eval_detection.py`
makes them).

    .venv/bin/python benchmarks/cli_startup.py [--repeats 5] [--src DIR]

`--src DIR` times another source tree instead of this one's `src/` (e.g. an older commit:
`git archive COMMIT src | tar -x -C /tmp/old`, then `--src /tmp/old/src`), so that before and after
are measured under the same load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ORACLE = REPO.parent / "shared" / "data" / "eval_oracle" / "thumos14"
BEFORE = {"help": 2.0, "thumos14": 2.2, "activitynet": None}  # whole-process seconds before issue 23
GOALS = {"help": "< 0.5 s", "thumos14": "<= 0.6 s", "activitynet": "< 1 s"}


def timed(argv: list[str], repeats: int, src: Path) -> tuple[float, float]:
    """(best wall seconds, CPU seconds of that run) of `python -m sola ARGV` in fresh processes importing `src`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))}
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "sola", *argv], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"sola {' '.join(argv)} failed: {done.stderr.strip()}")
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best = min(best, (wall, cpu))
    return best


def activitynet_case(folder: Path) -> tuple[Path, Path]:
    """Write the seeded ActivityNet-size ground truth and predictions; return their paths."""
    sys.path.insert(0, str(Path(__file__).parent))
    from eval_detection import make_case

    truth, predictions = make_case(4728, 42, 200, seed=0)
    gt, pred = folder / "gt.json", folder / "pred.json"
    gt.write_text(json.dumps(truth))
    pred.write_text(json.dumps(predictions))
    return gt, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="runs per command; the best is kept (default 5)")
    parser.add_argument("--src", type=Path, default=REPO / "src", help="the source tree to time (default: src/)")
    args = parser.parse_args()
    try:
        import orjson  # noqa: F401
        parser_name = "orjson"
    except ImportError:
        parser_name = "json (orjson not installed)"

    with tempfile.TemporaryDirectory() as tmp:
        gt, pred = activitynet_case(Path(tmp))
        cases = {"help": ["--help"]}
        if ORACLE.is_dir():
            cases["thumos14"] = ["eval-detection", str(ORACLE / "gt.json"), str(ORACLE / "pred.json"),
                                 "--subset", "test"]
        cases["activitynet"] = ["eval-detection", str(gt), str(pred)]
        size = pred.stat().st_size / 1e6
        print(f"{args.src}: whole-process seconds, best of {args.repeats} (load average {os.getloadavg()[0]:.1f} on "
              f"{os.cpu_count()} cores; JSON parsed by {parser_name})")
        names = {"help": "sola --help", "thumos14": "sola eval-detection, THUMOS14 oracle",
                 "activitynet": f"sola eval-detection, ActivityNet size ({size:.0f} MB of predictions)"}
        for key, argv in cases.items():
            wall, cpu = timed(argv, args.repeats, args.src.resolve())
            before = f"{BEFORE[key]:.1f} s before" if BEFORE[key] else "before: time an older tree with --src"
            print(f"  {names[key]:<58} {wall:5.2f} s wall {cpu:5.2f} s CPU   (goal {GOALS[key]}; {before})")
        if not ORACLE.is_dir():
            print(f"  (THUMOS14 oracle case skipped: {ORACLE} is absent)")


if __name__ == "__main__":
    main()
