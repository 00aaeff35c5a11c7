"""Torch threads: `--threads`, then SOLA_THREADS, then an OMP setting, then the cores other work leaves idle."""

import pytest
import torch

from sola.cli import build_parser
from sola.core import threads
from sola.core.errors import ConfigError
from tests.hostile import fails, run


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    for name in ("SOLA_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    previous = torch.get_num_threads()
    yield
    torch.set_num_threads(previous)


def machine(monkeypatch, cores: int, busy: float | None) -> None:
    """A machine of `cores` cores of which other processes keep `busy` busy (None: /proc/stat unreadable)."""
    monkeypatch.setattr(threads.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0.1: busy)


@pytest.mark.parametrize("cores, busy, expected", [
    (2, 0.0, 2),     # quiet: every core
    (2, 0.3, 2),     # a little background noise does not cost a thread
    (2, 1.0, 1),     # beside `yes > /dev/null`: the one idle core
    (2, 2.0, 1),     # all busy: still one thread
    (16, 3.6, 12),   # a shared server
    (4, None, 4),    # load unknown: torch's choice, one per core
])
def test_auto_counts_the_idle_cores(monkeypatch, cores, busy, expected):
    machine(monkeypatch, cores, busy)
    assert threads.choose_threads()[0] == expected


def test_order_flag_then_environment_then_omp(monkeypatch):
    machine(monkeypatch, 2, 1.0)
    monkeypatch.setenv("SOLA_THREADS", "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.choose_threads(5) == (5, "--threads")
    assert threads.choose_threads() == (3, "SOLA_THREADS")
    monkeypatch.delenv("SOLA_THREADS")
    assert threads.choose_threads() == (None, "OMP_NUM_THREADS")  # torchrun's setting is kept


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_bad_environment_value_is_refused(monkeypatch, value):
    monkeypatch.setenv("SOLA_THREADS", value)
    with pytest.raises(ConfigError, match="SOLA_THREADS"):
        threads.choose_threads()


def test_busy_cores_from_two_samples_of_proc_stat(monkeypatch):
    # user nice system idle iowait irq softirq steal: 400 ticks pass, 100 of them idle, on 4 cores
    samples = iter([[100, 0, 50, 1000, 0, 0, 0, 0], [350, 0, 100, 1100, 0, 0, 0, 0]])
    monkeypatch.setattr(threads, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    assert threads.busy_cores(0) == pytest.approx(3.0)
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)
    assert threads.busy_cores(0) is None


def test_use_threads_sets_torch(monkeypatch):
    machine(monkeypatch, 2, 1.0)
    assert threads.use_threads(None)[0] == 1 == torch.get_num_threads()
    assert threads.use_threads(2)[0] == 2 == torch.get_num_threads()


def test_commands_that_use_torch_take_threads_and_light_ones_do_not():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    takes = {name for name, sub in commands.items() if "--threads" in sub._option_string_actions}
    assert {"train", "transform", "demo", "compare", "ablate", "probe", "select", "extract", "detect"} <= takes
    assert not takes & {"eval-detection", "eval-proposals", "inspect", "show", "synth", "splice"}


def test_cli_sets_threads_and_notes_a_busy_machine(monkeypatch, capsys, tmp_path):
    machine(monkeypatch, 2, 1.0)
    run(capsys, "synth", str(tmp_path / "d"), "--videos", "6", "--dim", "8")
    code, _, err = run(capsys, "train", str(tmp_path / "d" / "features"), "--out", str(tmp_path / "run"),
                       "--steps", "2")
    assert code == 0 and torch.get_num_threads() == 1
    assert "note: torch uses 1 thread: 2 cores, 1.0 busy with other work" in err
    code, _, err = run(capsys, "train", str(tmp_path / "d" / "features"), "--out", str(tmp_path / "run2"),
                       "--steps", "2", "--threads", "2")
    assert code == 0 and torch.get_num_threads() == 2 and "torch uses" not in err


def test_bad_environment_value_is_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("SOLA_THREADS", "lots")
    run(capsys, "synth", str(tmp_path / "d"), "--videos", "6", "--dim", "8")
    fails(capsys, "train", str(tmp_path / "d" / "features"), "--out", str(tmp_path / "run"),
          says=("SOLA_THREADS='lots'", "integer >= 1"))
