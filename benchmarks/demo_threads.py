"""`sola demo` seconds on a quiet machine and beside one busy process (`yes > /dev/null`), by torch thread choice.

Each case runs the whole demo (`sola demo`, the synthetic default) in a fresh folder, in its own process, and
prints its wall seconds, its CPU seconds and the torch threads it used; the ratio busy / quiet is the figure issue 30
asks to keep within 2x. Cases:

    quiet, auto        the default: the idle cores (sola.core.threads)
    quiet, --threads 1
    busy, auto         beside `yes > /dev/null`
    busy, --threads C  torch's own default (one thread per core), the behaviour before sola chose; stopped after
                       --cap seconds (printed as "> cap")

    python benchmarks/demo_threads.py                       # all four cases, about 4-6 minutes on 2 cores
    python benchmarks/demo_threads.py --cases quiet-auto,busy-auto --cap 300
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = ("quiet-auto", "quiet-1", "busy-auto", "busy-all")


def run_demo(out: Path, threads: int | None, cap: float) -> dict:
    """One `sola demo --out OUT` in a child process: wall and CPU seconds, threads used, finished or stopped."""
    command = [sys.executable, "-m", "sola", "demo", "--out", str(out), "--quiet"]
    if threads is not None:
        command += ["--threads", str(threads)]
    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SOLA_THREADS")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=cap)
        finished, text = done.returncode == 0, done.stdout + done.stderr
        if not finished:
            raise SystemExit(f"{' '.join(command)} failed:\n{text[-3000:]}")
    except subprocess.TimeoutExpired as stopped:
        finished, text = False, (stopped.stderr or b"").decode(errors="replace")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    note = re.search(r"torch uses (\d+) thread", text)
    used = threads or (int(note.group(1)) if note else os.cpu_count())
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "threads": used, "finished": finished}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--cap", type=float, default=600.0, help="seconds after which a case is stopped")
    parser.add_argument("--out", default=None, help="folder for the demo outputs (default: a temporary one)")
    args = parser.parse_args(argv)
    cases = [case for case in args.cases.split(",") if case]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose among {', '.join(CASES)}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="demo_threads."))
    print(f"{cores} cores; sola demo per case in {root}")
    results = {}
    for case in cases:
        load, threads = case.split("-")
        busy = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) if load == "busy" else None
        try:
            time.sleep(0.5 if busy else 0)
            results[case] = run_demo(root / case, {"auto": None, "1": 1, "all": cores}[threads], args.cap)
        finally:
            if busy:
                busy.kill()
                busy.wait()
        row = results[case]
        wall = f"{row['wall']:.0f} s" if row["finished"] else f"> {args.cap:.0f} s (stopped)"
        print(f"{case:<11} threads {row['threads']}: {wall}, CPU {row['cpu']:.0f} s", flush=True)
    quiet = results.get("quiet-auto")
    for case in ("busy-auto", "busy-all"):
        if quiet and case in results and results[case]["finished"]:
            print(f"{case} / quiet-auto: x{results[case]['wall'] / quiet['wall']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
