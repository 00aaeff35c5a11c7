"""How many CPU threads torch uses: the cores this process can have now, not all the cores there are.

Torch's default is one intra-op thread per core. Beside another busy process that default loses badly: on 2 cores
beside `yes > /dev/null`, a head epoch of the demo took 70 s instead of 2.2 s, as each parallel region waits for a
thread whose core is taken (`benchmarks/demo_threads.py`). So the commands that use torch choose, in this order:

1. `--threads N` on the command line;
2. the environment variable `SOLA_THREADS` (an integer >= 1);
3. torch's own choice when `OMP_NUM_THREADS` or `MKL_NUM_THREADS` is set (torchrun sets it for its ranks);
4. otherwise the idle cores: the cores this process may run on (`os.sched_getaffinity`) less those other processes
   keep busy, measured over 0.1 s from `/proc/stat` (at least 1; all of them where `/proc/stat` is missing).

The measurement is made once, when the command starts: a process that starts later is not seen.
"""

from __future__ import annotations

import os
import time

from sola.core.errors import ConfigError

ENVIRONMENT = "SOLA_THREADS"
SAMPLE_SECONDS = 0.1


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; `os.cpu_count()` where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many cores other processes kept busy over the next `seconds` (from `/proc/stat`); None if unknown.

    This process sleeps meanwhile, so its own work is not counted.
    """
    first = _cpu_times()
    time.sleep(seconds)
    second = _cpu_times()
    if first is None or second is None:
        return None
    total = sum(second) - sum(first)
    idle = (second[3] + second[4]) - (first[3] + first[4])  # idle + iowait
    if total <= 0:
        return None
    return (total - idle) / total * (os.cpu_count() or 1)


def _cpu_times() -> list[int] | None:
    """The aggregate `cpu` line of `/proc/stat` (user, nice, system, idle, iowait, ...), or None."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if len(fields) < 6 or fields[0] != "cpu":
        return None
    try:
        return [int(value) for value in fields[1:9]]
    except ValueError:
        return None


def choose_threads(requested: int | None = None) -> tuple[int | None, str]:
    """The torch thread count to use and why: `(count, reason)`; count None keeps torch's own choice.

    Order: `requested` (`--threads`), `SOLA_THREADS`, an `OMP_NUM_THREADS`/`MKL_NUM_THREADS` already set
    (None), else the idle cores (`usable_cores` less `busy_cores`, rounded, at least 1). Raises `ConfigError`
    for a `SOLA_THREADS` that is not an integer >= 1.
    """
    if requested is not None:
        return requested, "--threads"
    text = os.environ.get(ENVIRONMENT, "").strip()
    if text:
        try:
            count = int(text)
        except ValueError:
            count = 0
        if count < 1:
            raise ConfigError(f"{ENVIRONMENT}={text!r}: give the number of torch threads, an integer >= 1 "
                              f"(or unset it to let sola count the idle cores)")
        return count, ENVIRONMENT
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(name, "").strip():
            return None, name
    cores = usable_cores()
    busy = busy_cores()
    if busy is None:
        return cores, f"{cores} cores (load unknown)"
    count = max(1, min(cores, round((os.cpu_count() or cores) - busy)))
    return count, f"{cores} cores, {busy:.1f} busy with other work"


def use_threads(requested: int | None = None) -> tuple[int, str]:
    """Set torch's intra-op thread count by `choose_threads`; returns `(threads in use, reason)`."""
    import torch

    count, reason = choose_threads(requested)
    if count is not None and count != torch.get_num_threads():
        torch.set_num_threads(count)
    return torch.get_num_threads(), reason
