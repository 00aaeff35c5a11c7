"""Crash safety: a writer or `sola transform` killed with SIGKILL resumes to byte-identical output."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sola.data.stores.csv import CsvWriter
from sola.data.stores.hdf5 import Hdf5Writer
from sola.data.stores.npy import NpyWriter
from sola.data.stores.npz import NpzWriter
from sola.data.stores.pickle import PickleFileWriter
from sola.data.stores.pickle_dir import PickleDirWriter
from sola.data.stores.pt import PtWriter

NUM_VIDEOS = 24
# layout -> (writer, output name)
WRITERS = {
    "npy": (NpyWriter, "out"),
    "csv": (CsvWriter, "out"),
    "hdf5": (Hdf5Writer, "out.h5"),
    "npz": (NpzWriter, "out"),
    "pt": (PtWriter, "out"),
    "pickle-dir": (PickleDirWriter, "out"),
    "pickle": (PickleFileWriter, "out.pkl"),
}

# Writes NUM_VIDEOS videos into every layout named in argv, skipping done ones, printing after each.
WRITER_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_transform_crash import WRITERS, video
root, layouts = Path(sys.argv[2]), sys.argv[3].split(",")
writers = {name: WRITERS[name][0](root / name / WRITERS[name][1]) for name in layouts}
for i in range(%d):
    for name, writer in writers.items():
        if not writer.has(f"vid{i:02d}"):
            writer.write(f"vid{i:02d}", video(i))
    print(i, flush=True)
for writer in writers.values():
    writer.close()
print("closed", flush=True)
""" % NUM_VIDEOS


def video(i: int) -> np.ndarray:
    """Deterministic features of video i: (100 + 17 i, 48) float32."""
    return np.random.default_rng(i).standard_normal((100 + 17 * i, 48)).astype(np.float32)


def digest(path: Path) -> dict[str, str]:
    """Relative file name -> sha256 of everything at `path` (a file or a directory)."""
    if path.is_file():
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest()}
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def _kill_after(command: list[str], lines: int, delay: float) -> bool:
    """Run `command`, SIGKILL it `delay` s after it printed `lines` lines; True if it was killed."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = 0
    for _ in process.stdout:
        seen += 1
        if seen >= lines:
            time.sleep(delay)
            break
    killed = process.poll() is None
    process.send_signal(signal.SIGKILL)
    process.wait()
    return killed


@pytest.mark.parametrize(
    "layouts, kill_after",
    [
        ("npy,csv,hdf5,npz,pickle-dir,pickle", 3),
        ("npy,csv,hdf5,npz,pickle-dir,pickle", 14),
        ("pt,hdf5,pickle", 9),
    ],
)
def test_writers_killed_mid_run_resume_byte_identical(tmp_path, layouts, kill_after):
    names = layouts.split(",")
    reference = tmp_path / "reference"
    for name in names:
        writer_cls, out = WRITERS[name]
        writer = writer_cls(reference / name / out)
        for i in range(NUM_VIDEOS):
            writer.write(f"vid{i:02d}", video(i))
        writer.close()
    command = [sys.executable, "-c", WRITER_SCRIPT, str(Path(__file__).parent), str(tmp_path / "run"), layouts]
    # the kill lands a little after a video finished, i.e. anywhere inside the next writes
    assert _kill_after(command, kill_after, delay=0.003 * kill_after), "the writer finished before the kill"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    for name in names:
        out = WRITERS[name][1]
        assert digest(tmp_path / "run" / name / out) == digest(reference / name / out), name
        assert not [p.name for p in (tmp_path / "run" / name).iterdir() if p.name.startswith(".")], name


@pytest.mark.parametrize("layout", ["hdf5", "pickle"])
def test_killed_inside_close_resumes_byte_identical(tmp_path, layout):
    writer_cls, out = WRITERS[layout]
    reference = writer_cls(tmp_path / "ref" / out)
    for i in range(5):
        reference.write(f"vid{i:02d}", video(i))
    reference.close()
    # killed while building the file: every part is written, a half-built temporary is left
    writer = writer_cls(tmp_path / "run" / out)
    for i in range(5):
        writer.write(f"vid{i:02d}", video(i))
    (tmp_path / "run" / f".{out}.k1lled.tmp").write_bytes(b"half a file")
    resumed = writer_cls(tmp_path / "run" / out)
    assert all(resumed.has(f"vid{i:02d}") for i in range(5))
    resumed.close()
    assert digest(tmp_path / "run" / out) == digest(tmp_path / "ref" / out)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [out]
    # killed after the rename but before the parts were removed
    again = writer_cls(tmp_path / "run" / out)
    again.write("vid03", video(3))
    again.close()
    assert digest(tmp_path / "run" / out) == digest(tmp_path / "ref" / out)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["npy", "hdf5"])
def test_sola_transform_sigkill_resume_byte_identical(tmp_path, layout):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocess (OMP_NUM_THREADS=1): same kernels, same bits
    try:
        _transform_killed_and_resumed(tmp_path, layout)
    finally:
        torch.set_num_threads(threads)


def _transform_killed_and_resumed(tmp_path: Path, layout: str) -> None:
    import torch

    from sola.adapt.adapter import SoLaAdapter, save_adapter
    from sola.cli import main

    videos = NUM_VIDEOS // 2
    torch.manual_seed(0)
    adapter = SoLaAdapter(48, hidden_dim=64)
    with torch.no_grad():
        adapter.alpha.fill_(0.5)  # a real change, not the identity
    save_adapter(adapter, tmp_path / "adapter.safetensors")
    writer_cls, name = WRITERS[layout]
    features = tmp_path / f"features-{name}"
    source = writer_cls(features)
    for i in range(videos):
        source.write(f"vid{i:02d}", video(i))
    source.close()
    common = [str(features), "--adapter", str(tmp_path / "adapter.safetensors"), "--device", "cpu", "--quiet"]
    common += ["--chunk-size", "16"]  # chunked passes (several per video); the same in every run
    assert main(["transform", *common, "--out", str(tmp_path / "ref" / name)]) == 0

    out = tmp_path / "run" / name
    # The child SIGKILLs itself at its K-th atomic rename: a deterministic kill point midway
    # (K-1 videos finished, one complete temporary file not yet renamed), whatever the machine load.
    kill_at = videos // 3
    child = (
        "import os, signal, sys\n"
        "rename, calls = os.replace, [0]\n"
        "def replace(src, dst):\n"
        "    calls[0] += 1\n"
        f"    if calls[0] == {kill_at}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return rename(src, dst)\n"
        "os.replace = replace\n"
        "from sola.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    command = [sys.executable, "-c", child, "transform", *common, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SOLA_THREADS": "1"}
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, timeout=300)
    assert result.returncode == -signal.SIGKILL, "transform was not killed midway"
    assert digest(out) != digest(tmp_path / "ref" / name) if out.exists() else True
    assert main(["transform", *common, "--out", str(out)]) == 0
    assert digest(out) == digest(tmp_path / "ref" / name)


@pytest.mark.slow
def test_sola_train_outputs_are_byte_identical_across_processes_and_resume(tmp_path):
    """Two `sola train` processes (different PYTHONHASHSEED) write the same bytes, and so does a run
    stopped after one epoch and resumed: safetensors metadata is written in a fixed order."""
    features = tmp_path / "features"
    writer = NpyWriter(features)
    for i in range(8):
        writer.write(f"vid{i:02d}", video(i)[:60])
    config = tmp_path / "small.yaml"
    config.write_text("adapter: {hidden_dim: 16}\nmatching: {projector_dim: 16}\n"
                      "fit: {batch_size: 4, lr: 0.001, checkpoint_every: 1, device: cpu}\n")

    def train(seed: str, *extra: str) -> None:
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": "1", "SOLA_THREADS": "1"}
        command = [sys.executable, "-m", "sola", "train", str(features), "--quiet", *extra]
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr

    def outputs(run: Path) -> dict[str, str]:
        files = [run / "adapter.safetensors", run / "state.safetensors", *sorted((run / "checkpoints").iterdir())]
        return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in files}

    train("1", "--out", str(tmp_path / "a"), "--config", str(config), "--epochs", "3")
    train("2", "--out", str(tmp_path / "b"), "--config", str(config), "--epochs", "3")
    train("3", "--out", str(tmp_path / "c"), "--config", str(config), "--epochs", "1")
    train("4", "--resume", str(tmp_path / "c"), "--epochs", "3")
    reference = outputs(tmp_path / "a")
    assert len(reference) == 6  # adapter, state, epochs 0..3
    assert outputs(tmp_path / "b") == reference
    assert outputs(tmp_path / "c") == reference
