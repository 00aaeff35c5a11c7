"""Hostile feature stores (issue "Trust I"): what `inspect`, `train` and `transform` make of broken,
odd or numerically dangerous stores, resumes over damaged outputs, and a full disk.

A new case is one line in a table: a store entry in `NPY_ENTRIES` or `LAYOUT_FILES`, a numeric hazard in
`HAZARDS`, a damaged output in `DAMAGES`, a failing write in `FULL_DISK`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from sola.core.atomic import json_text
from sola.core.runs import write_metrics
from sola.data.stores import open_store
from sola.data.stores.csv import CsvWriter
from sola.data.stores.hdf5 import Hdf5Writer
from sola.data.stores.npy import NpyWriter
from sola.data.stores.npz import NpzWriter
from sola.data.stores.pickle import PickleFileWriter
from sola.data.stores.pickle_dir import PickleDirWriter
from sola.data.stores.pt import PtWriter
from tests.hostile import bench, fails, one_line, run, snapshot  # noqa: F401


def copy_features(bench, tmp_path: Path) -> Path:
    """A copy of the bench's npy store that a test may break."""
    return Path(shutil.copytree(bench["features"], tmp_path / "features"))


def first_video(features: Path) -> Path:
    return sorted(features.glob("*.npy"))[0]


def strict_json_lines(path: Path) -> list[dict]:
    """Every line of a JSONL file, refusing the NaN/Infinity that JSON does not have."""
    def refuse(constant):
        raise AssertionError(f"{path} holds {constant}")
    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines() if line]


# -- entries of an npy store that are no complete feature file: named by every command, never opened ---------
def _truncated(folder: Path) -> None:
    data = first_video(folder).read_bytes()
    (folder / "bad.npy").write_bytes(data[: len(data) // 2])


NPY_ENTRIES = {
    "0-byte": lambda d: (d / "bad.npy").write_bytes(b""),
    "truncated": _truncated,
    "garbage header": lambda d: (d / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f4', nonsense}\n"),
    "header claims more rows": lambda d: (d / "bad.npy").write_bytes(
        first_video(d).read_bytes().replace(b"'shape': (", b"'shape': (99999", 1)),
    "pickled objects": lambda d: np.save(d / "bad.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True),
    "dangling link": lambda d: (d / "bad.npy").symlink_to(d / "nowhere.npy"),
    "link loop": lambda d: (d / "bad.npy").symlink_to("bad.npy"),
    "FIFO": lambda d: os.mkfifo(d / "bad.npy"),
    "directory": lambda d: (d / "bad.npy").mkdir(),
    "link to /dev/zero": lambda d: (d / "bad.npy").symlink_to("/dev/zero"),
}


def _command(name: str, features: Path, bench, tmp_path: Path) -> list:
    return {
        "train": ["train", features, "--out", tmp_path / "run", "--epochs", "1", "--quiet"],
        "transform": ["transform", features, "--adapter", bench["adapter"], "--out", tmp_path / "out", "--quiet"],
    }[name]


@pytest.mark.parametrize("entry", list(NPY_ENTRIES))
def test_inspect_names_every_entry_that_is_no_feature_file(capsys, bench, tmp_path, entry):
    features = copy_features(bench, tmp_path)
    NPY_ENTRIES[entry](features)
    code, out, err = run(capsys, "inspect", features, "--quiet")
    assert code == 1 and "Traceback" not in err, err
    problem = [line for line in out.splitlines() if line.startswith("problem:")]
    assert problem and str(features / "bad.npy") in problem[0], out


@pytest.mark.parametrize("command", ["train", "transform"])
@pytest.mark.parametrize("entry", list(NPY_ENTRIES))
def test_commands_refuse_an_entry_that_is_no_feature_file_naming_it(capsys, bench, tmp_path, entry, command):
    features = copy_features(bench, tmp_path)
    NPY_ENTRIES[entry](features)
    fails(capsys, *_command(command, features, bench, tmp_path), says=(str(features / "bad.npy"),))


# -- the same in every other layout ---------------------------------------------------------------------------
VIDEOS = {"a": np.arange(48, dtype=np.float32).reshape(16, 3), "b": np.ones((20, 3), np.float32)}
WRITERS = {  # layout -> (name of the store, its writer, name of video a's file inside a directory store)
    "csv": ("store", CsvWriter, "a.csv"),
    "npz": ("store", NpzWriter, "a.npz"),
    "pt": ("store", PtWriter, "a.pt"),
    "pickle-dir": ("store", PickleDirWriter, "a.pkl"),
    "pickle": ("store.pkl", PickleFileWriter, None),
    "hdf5": ("store.h5", Hdf5Writer, None),
}


def layout_store(tmp_path: Path, layout: str, videos: dict = VIDEOS) -> Path:
    name, writer_class, _ = WRITERS[layout]
    with writer_class(tmp_path / name) as writer:
        for video_id, array in videos.items():
            writer.write(video_id, array)
    return tmp_path / name


def _cut(file: Path) -> None:
    data = file.read_bytes()
    file.unlink()  # a link or a FIFO in its place must not write through
    file.write_bytes(data[: len(data) // 2 - 1])


def _replace(file: Path, make) -> None:
    file.unlink()
    make(file)


DAMAGE = {  # name -> (damage a file, what the line says beside its name)
    "0-byte": (lambda f: _replace(f, lambda p: p.write_bytes(b"")), ""),
    "truncated": (_cut, ""),
    "FIFO": (lambda f: _replace(f, os.mkfifo), "named pipe (FIFO)"),
    "dangling link": (lambda f: _replace(f, lambda p: p.symlink_to(p.parent / "nowhere")), "which does not exist"),
    "link to /dev/zero": (lambda f: _replace(f, lambda p: p.symlink_to("/dev/zero")), "a character device"),
}
DIRECTORY_LAYOUTS = [layout for layout, (_, _, file) in WRITERS.items() if file]
ONE_FILE_LAYOUTS = [layout for layout, (_, _, file) in WRITERS.items() if not file]


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("layout", DIRECTORY_LAYOUTS)
def test_a_bad_file_in_a_directory_layout_is_named(capsys, tmp_path, layout, damage):
    store = layout_store(tmp_path, layout)
    bad = store / WRITERS[layout][2]
    recipe, says = DAMAGE[damage]
    recipe(bad)
    code, out, err = run(capsys, "inspect", store, "--layout", layout, "--quiet")
    assert code == 1 and "Traceback" not in err, err
    problem = next(line for line in out.splitlines() if line.startswith("problem:"))
    assert (str(bad) in problem and says in problem) or (damage == "0-byte" and "1 empty videos (a)" in problem), out
    fails(capsys, "train", store, "--layout", layout, "--out", tmp_path / "run", "--quiet", says=(str(bad), says))


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("layout", ONE_FILE_LAYOUTS)
def test_a_bad_one_file_store_is_one_line_naming_it(capsys, tmp_path, layout, damage):
    store = layout_store(tmp_path, layout)
    recipe, says = DAMAGE[damage]
    recipe(store)
    for command in (["inspect"], ["train", "--out", tmp_path / "run"]):
        fails(capsys, *command, store, "--layout", layout, "--quiet", says=(str(store), says))


def test_a_csv_cut_inside_its_last_row_is_not_read_as_a_shorter_number(capsys, tmp_path):
    store = layout_store(tmp_path, "csv")
    file = store / "a.csv"
    file.write_bytes(file.read_bytes().rstrip(b"\n")[:-1])  # "...,46,47\n" -> "...,46,4": a valid row, wrong
    code, out, _ = run(capsys, "inspect", store, "--quiet")
    assert code == 1 and f"{file}: its last row has no line end" in out, out


EMPTY_STORES = {  # name -> (make it, extra inspect flags)
    "HDF5 without datasets": (lambda p: __import__("h5py").File(p / "empty.h5", "w").close(), "empty.h5", []),
    "pickle of an empty dict": (lambda p: (p / "empty.pkl").write_bytes(__import__("pickle").dumps({})),
                                "empty.pkl", []),
    "npy directory without files": (lambda p: (p / "empty").mkdir(), "empty", ["--layout", "npy"]),
}


@pytest.mark.parametrize("name", list(EMPTY_STORES))
def test_an_empty_store_is_never_clean(capsys, tmp_path, name):
    make, path, flags = EMPTY_STORES[name]
    make(tmp_path)
    code, out, _ = run(capsys, "inspect", tmp_path / path, *flags, "--quiet")
    assert code == 1 and "problem:      the store holds no videos" in out, out


# -- numbers: values whose squares overflow float32, and non-finite figures of the fit ---------------------------
HAZARDS = {  # name -> (value, dtype, what inspect says; None: clean)
    "1e30 (float32)": (1e30, np.float32, "overflow float32 (sola fits"),
    "-3e19 (float32)": (-3e19, np.float32, "whose squares overflow float32"),
    "1e300 (float64)": (1e300, np.float64, "overflow float32 itself"),
    "1e19 (float32: its square fits)": (1e19, np.float32, None),
    "subnormal 1e-40": (1e-40, np.float32, None),
}


@pytest.mark.parametrize("name", list(HAZARDS))
def test_inspect_flags_values_whose_squares_overflow_float32(capsys, bench, tmp_path, name):
    value, dtype, says = HAZARDS[name]
    features = copy_features(bench, tmp_path)
    video = first_video(features)
    array = np.load(video).astype(dtype)
    array[2, 3] = value
    np.save(video, array)
    code, out, _ = run(capsys, "inspect", features, "--quiet")
    if says is None:
        assert code == 0 and "problem" not in out, out
    else:
        assert code == 1 and says in out and video.stem in out, out


@pytest.mark.parametrize("policy", ["error", "zero"])
def test_a_non_finite_figure_stops_the_fit_naming_it_the_epoch_and_the_video(capsys, bench, tmp_path, policy):
    features = copy_features(bench, tmp_path)
    video = sorted(features.glob("*.npy"))[3]
    np.save(video, np.full_like(np.load(video), 1e30))
    run_dir = tmp_path / "run"
    fails(capsys, "train", features, "--out", run_dir, "--epochs", "2", "--nan-policy", policy, "--quiet",
          says=("fit stopped at epoch 1: departure", "not finite", video.stem, "overflow float32"))
    records = strict_json_lines(run_dir / "metrics.jsonl")
    assert records[-1]["departure"] is None and "departure" in records[-1]["stopped"]


def test_json_writers_write_non_finite_numbers_as_null(tmp_path):
    assert json_text({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": (np.float32("nan"),)}) == (
        '{"a": null, "b": [null, null, 1.5], "c": [null]}')
    write_metrics(tmp_path, [{"epoch": 1, "loss": float("nan"), "health": {"rank": float("inf")}}])
    assert strict_json_lines(tmp_path / "metrics.jsonl") == [{"epoch": 1, "loss": None, "health": {"rank": None}}]


def test_nonfinite_figures_are_found_at_any_depth():
    from sola.adapt.health import nonfinite_figures

    record = {"epoch": 2, "loss": 0.5, "gate": float("nan"), "health": {"finite": True, "rank": float("-inf")}}
    assert nonfinite_figures(record) == ["gate", "health.rank"]


# -- resuming over damaged outputs -----------------------------------------------------------------------------
def test_a_transform_rerun_redoes_a_truncated_output(capsys, bench, tmp_path):
    out = tmp_path / "out"
    args = ["transform", bench["features"], "--adapter", bench["adapter"], "--out", out, "--quiet"]
    assert run(capsys, *args)[0] == 0
    clean = snapshot(out)
    victim = sorted(out.glob("*.npy"))[2]
    victim.write_bytes(victim.read_bytes()[:-40])
    code, printed, _ = run(capsys, *args)
    assert code == 0 and "transformed 1 videos (5 already done, 1 redone" in printed and victim.name in printed
    assert snapshot(out) == clean


DAMAGES = {  # name -> damage one finished output file
    "truncated": _cut,
    "0-byte": lambda f: f.write_bytes(b""),
    "another video's output": lambda f: shutil.copyfile(sorted(f.parent.glob(f"*{f.suffix}"))[-1], f),
}


@pytest.mark.parametrize(("layout", "damage"), [(layout, damage) for layout in ["npy", *WRITERS] for damage in DAMAGES
                                               if layout not in ONE_FILE_LAYOUTS or damage != "another video's output"])
def test_every_layout_redoes_a_damaged_output_on_rerun(bench, tmp_path, layout, damage):
    from sola.adapt.adapter import load_adapter
    from sola.adapt.transform import transform_store

    videos = {"a": np.random.default_rng(0).standard_normal((30, 16)).astype(np.float32),
              "b": np.random.default_rng(1).standard_normal((40, 16)).astype(np.float32)}
    if layout == "npy":
        with NpyWriter(tmp_path / "store") as writer:
            for video_id, array in videos.items():
                writer.write(video_id, array)
        source = tmp_path / "store"
    else:
        source = layout_store(tmp_path, layout, videos)
    store, adapter = open_store(source, layout=layout), load_adapter(bench["adapter"])
    out = tmp_path / ("out" + Path(WRITERS.get(layout, ("",))[0]).suffix)
    transform_store(adapter, store, out, progress=False)
    expected = {video_id: open_store(out, layout=layout).read(video_id) for video_id in videos}
    damaged = out if out.is_file() else sorted(p for p in out.iterdir() if p.name.startswith("a."))[0]
    DAMAGES[damage](damaged)
    summary = transform_store(adapter, store, out, progress=False)
    assert summary["redone"] >= 1 and summary["written"] == summary["redone"], summary
    again = open_store(out, layout=layout)
    for video_id, array in expected.items():
        np.testing.assert_array_equal(again.read(video_id), array)
    assert transform_store(adapter, store, out, progress=False)["redone"] == 0


# -- a full disk, mixed dims, every video dropped ----------------------------------------------------------------
class FakeDisk:
    """`os.statvfs` of a disk with `free` bytes left."""

    def __init__(self, free: int) -> None:
        self.f_bavail, self.f_frsize = free, 1


def _short_write(free: int):
    """np.save as it fails on a disk without room: part of the file lands, then NumPy's errno-less OSError."""
    def patch(monkeypatch):
        def save(handle, array, allow_pickle=True):
            handle.write(b"\x93NUMPY half a file")
            raise OSError(f"{array.nbytes} requested and 0 written")
        monkeypatch.setattr(np, "save", save)
        monkeypatch.setattr(os, "statvfs", lambda path: FakeDisk(free))
    return patch


def _replace_fails(monkeypatch):
    real = os.replace

    def replace(src, dst):
        if str(dst).endswith(".npy"):
            raise OSError(errno.ENOSPC, "No space left on device", str(src), str(dst))
        real(src, dst)
    monkeypatch.setattr(os, "replace", replace)


FULL_DISK = {  # name -> (patch, what the line says)
    "short write, no room left": (_short_write(0), ("no space left on the device", "rerun")),
    "short write, room left": (_short_write(1 << 40), ("requested and 0 written",)),
    "rename fails with ENOSPC": (_replace_fails, ("no space left on the device",)),
}


@pytest.mark.parametrize("case", list(FULL_DISK))
def test_a_full_disk_says_so_and_names_the_output(capsys, monkeypatch, bench, tmp_path, case):
    patch, says = FULL_DISK[case]
    out = tmp_path / "out"
    patch(monkeypatch)
    first = sorted(p.name for p in bench["features"].glob("*.npy"))[0]
    line = fails(capsys, "transform", bench["features"], "--adapter", bench["adapter"], "--out", out, "--quiet",
                 says=(f"{out / first}: ", *says))
    assert "Errno" not in line and "None" not in line, line
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_mixed_dims_name_the_odd_video_not_the_majority(capsys, bench, tmp_path):
    features = copy_features(bench, tmp_path)
    odd = first_video(features)  # first in order: the old check blamed every other video
    np.save(odd, np.zeros((50, 17), np.float32))
    says = (f"video '{odd.stem}' has feature dim 17 where 5 others have 16",)
    code, out, _ = run(capsys, "inspect", features, "--quiet")
    assert code == 1 and says[0] in out, out
    fails(capsys, "train", features, "--out", tmp_path / "run", "--quiet", says=says)


@pytest.mark.parametrize("command", ["train", "transform"])
def test_every_video_dropped_is_said_so_not_blamed_on_the_window(capsys, bench, tmp_path, command):
    features = copy_features(bench, tmp_path)
    for video in features.glob("*.npy"):
        array = np.load(video)
        array[1, 1] = np.nan
        np.save(video, array)
    line = fails(capsys, *_command(command, features, bench, tmp_path), "--nan-policy", "drop-video",
                 says=("every video", "NaN"))
    assert "window" not in line, line


def test_an_extract_rerun_redoes_a_truncated_npy(tmp_path):
    from sola.extract.extract import extract_videos
    from tests.test_extract_resume import MeanEncoder, grid
    from tests.test_extract_video import write_counter_video

    videos, out = tmp_path / "videos", tmp_path / "features"
    videos.mkdir()
    for name in ("a", "b"):
        write_counter_video(videos / f"{name}.mkv", frames=20, fps=12)
    settings = grid(window=8, stride=8, workers=1)
    extract_videos(videos, out, settings, encoder=MeanEncoder(), progress=False)
    first = np.load(out / "a.npy")
    (out / "a.npy").write_bytes((out / "a.npy").read_bytes()[:-100])
    summary = extract_videos(videos, out, settings, encoder=MeanEncoder(), progress=False)
    assert summary.extracted == ["a"] and summary.skipped == ["b"], summary
    assert len(summary.warnings) == 1 and str(out / "a.npy") in summary.warnings[0], summary.warnings
    np.testing.assert_array_equal(np.load(out / "a.npy"), first)


NONFINITE_REASONS = {  # name -> (figures, weights finite, videos, largest magnitude, what the reason says)
    "data overflow": (["departure"], True, ["v1"], 1e30, ("departure is not finite", "video v1", "overflow float32")),
    "diverged": (["loss", "gate"], False, [], 0.0, ("loss, gate are not finite", "the fit diverged", "lower fit.lr")),
    "health windows only": ([], True, ["v2", "v3"], 0.0, ("the adapted features of the health windows are not",
                                                         "videos v2, v3", "lower fit.lr")),
}


@pytest.mark.parametrize("case", list(NONFINITE_REASONS))
def test_the_reason_of_a_non_finite_stop_names_figure_and_cause(case):
    from sola.adapt.health import nonfinite_reason

    figures, weights_finite, videos, largest, says = NONFINITE_REASONS[case]
    reason = nonfinite_reason(figures, weights_finite, videos, largest, "lower fit.lr")
    assert all(text in reason for text in says), reason
