"""Bad feature input: one clear error naming the file and the fix, never a traceback or bad data."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from sola.cli import main
from sola.core.errors import EmptyVideoError, StoreError, UnsafePickleError
from sola.data.stores import open_store
from sola.data.stores.checks import apply_nan_policy, scan_store
from sola.data.stores.csv import CsvWriter
from sola.data.stores.hdf5 import Hdf5Writer
from sola.data.stores.npy import NpyWriter
from sola.data.stores.npz import NpzWriter
from sola.data.stores.pickle_dir import PickleDirWriter
from sola.data.stores.pt import PtWriter

GOOD = np.arange(24, dtype=np.float32).reshape(6, 4)
DIR_WRITERS = {"npy": NpyWriter, "csv": CsvWriter, "npz": NpzWriter, "pt": PtWriter, "pickle-dir": PickleDirWriter}


def _one_file(tmp_path: Path, layout: str, array: np.ndarray = GOOD) -> Path:
    """Write one video with the layout's own writer (writers do not validate) and return its file."""
    writer = DIR_WRITERS[layout](tmp_path / "store")
    writer.write("vid", array)
    return next((tmp_path / "store").glob("vid.*"))


def test_nan_policy():
    bad = GOOD.copy()
    bad[1, 2], bad[3, 0] = np.nan, np.inf
    with pytest.raises(StoreError, match=r"clip\.npy: 1 NaN and 1 Inf values.*--nan-policy zero"):
        apply_nan_policy(bad, "error", "clip.npy")
    zeroed = apply_nan_policy(bad, "zero", "clip.npy")
    assert zeroed[1, 2] == 0 and zeroed[3, 0] == 0 and np.isnan(bad[1, 2])  # input untouched
    assert np.array_equal(np.delete(zeroed.ravel(), [6, 12]), np.delete(GOOD.ravel(), [6, 12]))
    assert apply_nan_policy(bad, "drop-video", "clip.npy") is None
    assert apply_nan_policy(GOOD, "error", "x") is GOOD
    with pytest.raises(StoreError, match="unknown NaN policy"):
        apply_nan_policy(GOOD, "ignore", "x")


def test_dims_that_differ_are_an_error(tmp_path):
    writer = NpyWriter(tmp_path)
    writer.write("a", GOOD)
    writer.write("b", np.zeros((3, 5), np.float32))
    assert scan_store(open_store(tmp_path), progress=False).problems()[0].startswith(
        f"{tmp_path}: videos differ in feature dim: 1 of dim 4 (a), 1 of dim 5 (b)"
    )


@pytest.mark.parametrize("layout", sorted(set(DIR_WRITERS) - {"csv"}))  # a CSV is always 2-D
@pytest.mark.parametrize("shape", [(6,), (2, 3, 4)])
def test_wrong_rank(tmp_path, layout, shape):
    file = _one_file(tmp_path, layout, np.zeros(shape, np.float32))
    with pytest.raises(StoreError, match=rf"{file.name}: features must have shape \(T, C\)"):
        open_store(tmp_path / "store").read("vid")


@pytest.mark.parametrize("layout", sorted(DIR_WRITERS))
def test_empty_video(tmp_path, layout):
    if layout == "csv":
        file = _one_file(tmp_path, layout)
        file.write_text("f0,f1,f2,f3\n")
    else:
        file = _one_file(tmp_path, layout, np.zeros((0, 4), np.float32))
    with pytest.raises(EmptyVideoError, match=rf"{file.name}: empty features"):
        open_store(tmp_path / "store").read("vid")


@pytest.mark.parametrize("layout", sorted(DIR_WRITERS))
def test_truncated_file(tmp_path, layout):
    features = np.random.default_rng(0).standard_normal((50, 16))  # float64: long CSV rows, cut mid-row
    file = _one_file(tmp_path, layout, features)
    data = file.read_bytes()
    file.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(StoreError, match=rf"{file.name}: .*(truncated|corrupt|re-export)"):
        open_store(tmp_path / "store").read("vid")


def test_truncated_and_corrupt_hdf5(tmp_path):
    writer = Hdf5Writer(tmp_path / "f.h5")
    for i in range(3):
        writer.write(f"v{i}", np.ones((2000, 64), np.float32))
    writer.close()
    data = (tmp_path / "f.h5").read_bytes()
    (tmp_path / "f.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match=r"f\.h5: .*truncated or corrupt"):
        open_store(tmp_path / "f.h5").read("v2")
    (tmp_path / "g.h5").write_bytes(b"not an hdf5 file at all")
    with pytest.raises(StoreError, match=r"g\.h5: not a readable HDF5 file"):
        open_store(tmp_path / "g.h5").video_ids()


def test_non_numeric_csv_cell(tmp_path):
    (tmp_path / "v_a.csv").write_text("f0,f1\n1.0,2.0\n3.0,oops\n")
    with pytest.raises(StoreError, match=r"v_a\.csv: not a numeric feature CSV.*oops"):
        open_store(tmp_path).read("v_a")
    (tmp_path / "v_a.csv").write_text("f0,f1\n1.0,2.0\n3.0\n")
    with pytest.raises(StoreError, match=r"v_a\.csv: not a numeric feature CSV"):
        open_store(tmp_path).read("v_a")


def test_duplicate_video_ids(tmp_path):
    PickleDirWriter(tmp_path).write("vid", GOOD)
    (tmp_path / "vid.pickle").write_bytes((tmp_path / "vid.pkl").read_bytes())
    with pytest.raises(StoreError, match=r"duplicate video id 'vid' \(vid\.pickle and vid\.pkl\)"):
        open_store(tmp_path).video_ids()


class Exploit:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_that_asks_for_code_is_refused(tmp_path, capsys):
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"vid": Exploit()}))
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl: the pickle asks for builtins\.print.*can run code"):
        open_store(tmp_path / "evil.pkl").video_ids()
    assert "pwned" not in capsys.readouterr().out


def test_pt_with_objects_is_refused(tmp_path):
    import torch

    (tmp_path / "store").mkdir()
    torch.save({"feats": torch.zeros(3, 4), "extra": Exploit()}, tmp_path / "store" / "vid.pt")
    with pytest.raises(StoreError, match=r"vid\.pt: refused: .*asks for (builtins\.)?print.*could run code") as raised:
        open_store(tmp_path / "store").read("vid")
    assert "weights_only" not in str(raised.value) and "\x1b" not in str(raised.value)  # not torch's advice


def test_cli_gives_one_line_and_exit_2(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"sola inspect: error: feature store {tmp_path / 'missing'} does not exist"]


def test_inspect_counts_problems_and_exits_1(tmp_path, capsys):
    writer = NpyWriter(tmp_path)
    bad = GOOD.copy()
    bad[0, 0], bad[1, 1], bad[2, 2] = np.nan, np.nan, -np.inf
    writer.write("a_nan", bad)
    writer.write("b_ok", GOOD)
    writer.write("c_empty", np.zeros((0, 4), np.float32))
    (tmp_path / "d_broken.npy").write_bytes((tmp_path / "b_ok.npy").read_bytes()[:100])
    assert main(["inspect", str(tmp_path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "videos:       4" in out and "NaN values:   2" in out and "Inf values:   1" in out
    assert "empty videos: 1" in out and "unreadable:   1" in out
    assert "problem:      1 videos hold NaN/Inf values (a_nan)" in out
    assert "length:       min 6 / median 6 / max 6" in out
