"""The layout contract: declared options (and the CLI flags built from them), close(), open_output,
reads that change nothing, and the shared key-selection / file-sniffing helpers."""

from __future__ import annotations

import argparse
import inspect
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from sola.cli.common import add_store_arguments, store_options
from sola.core.errors import StoreError
from sola.data.stores import LAYOUTS, FeatureStore, StoreOption, command_line_options, open_store, register_layout
from sola.data.stores.csv import CsvWriter
from sola.data.stores.hdf5 import HDF5_SIGNATURE, Hdf5Writer
from sola.data.stores.npy import NpyStore, NpyWriter
from sola.data.stores.npz import NpzWriter
from sola.data.stores.pickle import PickleFileWriter
from sola.data.stores.pickle_dir import PickleDirWriter
from sola.data.stores.pt import PtWriter
from sola.data.stores.sniff import file_looks_like, pick_key, select_feature

VIDEOS = {"a": np.arange(12, dtype=np.float32).reshape(4, 3), "b": np.ones((6, 3), np.float32)}

# layout -> (output name, writer built with non-default options, open_store options that read it)
SOURCES = {
    "npy": ("src", lambda p: NpyWriter(p, prefix="v_", suffix="_rgb"), {"prefix": "v_", "suffix": "_rgb"}),
    "csv": ("src", lambda p: CsvWriter(p, prefix="v_"), {"prefix": "v_", "dtype": "float32"}),
    "npz": ("src", lambda p: NpzWriter(p, prefix="v_", key="emb", compressed=True), {"prefix": "v_"}),
    "pt": ("src", lambda p: PtWriter(p, prefix="v_", key="emb"), {"prefix": "v_"}),
    "pickle-dir": ("src", lambda p: PickleDirWriter(p, prefix="v_", key="emb"), {"prefix": "v_"}),
    "pickle": ("src.pkl", lambda p: PickleFileWriter(p, key="emb"), {}),
    "hdf5": ("src.h5", lambda p: Hdf5Writer(p, key="emb", group="features/i3d"), {"group": "features/i3d"}),
}


def _source(tmp_path: Path, layout: str, videos: dict[str, np.ndarray] = VIDEOS) -> FeatureStore:
    name, make_writer, options = SOURCES[layout]
    with make_writer(tmp_path / name) as writer:
        for video_id, array in videos.items():
            writer.write(video_id, array)
    return open_store(tmp_path / name, layout=layout, **options)


@pytest.fixture
def scratch_layout():
    """Register layouts for one test and remove them afterwards."""
    added: list[str] = []

    def register(name: str, options: tuple[StoreOption, ...]) -> type[FeatureStore]:
        class Scratch(NpyStore):
            declared_options = options

            def __init__(self, path, **kwargs):
                super().__init__(path)
                self.kwargs = kwargs

        added.append(name)
        return register_layout(name)(Scratch)

    yield register
    for name in added:
        LAYOUTS.pop(name)


# -- declared options -----------------------------------------------------------------------------
def test_declared_options_are_what_each_constructor_takes():
    for layout, cls in LAYOUTS.items():
        parameters = inspect.signature(cls).parameters
        keywords = [n for n, p in parameters.items() if n != "path" and p.kind != p.VAR_KEYWORD]
        assert [option.name for option in cls.declared_options] == keywords, layout
        assert cls.forwards_options == any(p.kind == p.VAR_KEYWORD for p in parameters.values()), layout
        assert all(isinstance(option.help, str) and option.help for option in cls.declared_options), layout


def test_only_prefix_suffix_key_are_flags_today():
    flags = command_line_options()
    assert list(flags) == ["prefix", "suffix", "key"]
    assert flags["prefix"][1] == ["npy", "csv", "pickle-dir", "npz", "pt"]
    assert flags["key"][1] == ["hdf5", "pickle", "pickle-dir", "npz", "pt"]


def test_open_store_refuses_undeclared_options_and_two_stream_passes_them_on(tmp_path):
    NpyWriter(tmp_path / "rgb", prefix="v_").write("a", VIDEOS["a"])
    NpyWriter(tmp_path / "flow", prefix="v_").write("a", VIDEOS["b"][:4])
    with pytest.raises(StoreError, match=r"layout 'npy' does not take these options \(group, key\); it takes: prefix"):
        open_store(tmp_path / "rgb", layout="npy", key="x", group="g")
    store = open_store(tmp_path, prefix="v_")  # two-stream: prefix goes to both streams
    assert store.layout == "twostream" and store.video_ids() == ["a"] and store.shape("a") == (4, 6)


def test_cli_store_flags_are_built_from_the_declarations(scratch_layout):
    parser = argparse.ArgumentParser()
    add_store_arguments(parser)
    args = parser.parse_args(["feats", "--prefix", "v_", "--key", "emb"])
    assert store_options(args) == {"prefix": "v_", "key": "emb"}  # unset flags are left out
    assert store_options(parser.parse_args(["feats"])) == {}

    scratch_layout("scratch", (StoreOption("stride_frames", int, "frames between snippets"),
                               StoreOption("secret", str, "Python only", cli=False)))
    parser = argparse.ArgumentParser()
    add_store_arguments(parser)
    args = parser.parse_args(["feats", "--layout", "scratch", "--stride-frames", "8"])
    assert store_options(args) == {"stride_frames": 8}  # typed as declared
    help_text = " ".join(parser.format_help().split())
    assert "twostream, scratch)" in help_text and "frames between snippets; for scratch" in help_text
    with pytest.raises(SystemExit):
        parser.parse_args(["feats", "--secret", "x"])  # cli=False: no flag


def test_a_declared_option_reaches_the_layout_and_types_must_agree(tmp_path, scratch_layout):
    NpyWriter(tmp_path).write("a", VIDEOS["a"])
    scratch_layout("scratch", (StoreOption("stride_frames", int, "frames between snippets"),))
    assert open_store(tmp_path, layout="scratch", stride_frames=8).kwargs == {"stride_frames": 8}
    scratch_layout("scratch2", (StoreOption("stride_frames", str, "the same name, another type"),))
    with pytest.raises(StoreError, match="'scratch' and 'scratch2' declare option 'stride_frames' with different"):
        command_line_options()


# -- close ----------------------------------------------------------------------------------------
def _open_fds_to(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve())) if fds.is_dir() else -1


@pytest.mark.parametrize("layout", sorted(SOURCES))
def test_every_store_closes_and_reads_again_after(tmp_path, layout):
    store = _source(tmp_path, layout)
    with store as same:
        assert same is store and np.array_equal(store.read("a"), VIDEOS["a"])
    store.close()  # twice is fine
    assert np.array_equal(store.read("b"), VIDEOS["b"])


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count open files")
def test_hdf5_close_releases_the_file_handle(tmp_path):
    store = _source(tmp_path, "hdf5")
    store.read("a")
    assert _open_fds_to(store.path) == 1
    store.close()
    assert _open_fds_to(store.path) == 0
    with _source(tmp_path / "x", "hdf5") as other:  # the context manager closes it
        other.read("a")
        assert _open_fds_to(other.path) == 1
    assert _open_fds_to(other.path) == 0
    NpyWriter(tmp_path / "pair" / "flow").write("a", VIDEOS["a"])
    (tmp_path / "pair" / "rgb").mkdir()
    two = open_store(tmp_path / "pair", layout="twostream", rgb=store, flow=tmp_path / "pair" / "flow")
    two.read("a")
    assert _open_fds_to(store.path) == 1
    two.close()  # closes its streams
    assert _open_fds_to(store.path) == 0


# -- open_output ----------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", sorted(SOURCES))
def test_open_output_opens_what_the_writer_wrote(tmp_path, layout):
    store = _source(tmp_path, layout)
    name = SOURCES[layout][0]
    out = tmp_path / "out" / name
    with store.writer(out) as writer:
        for video_id in store.video_ids():
            writer.write(video_id, store.read(video_id) * 2)
    back = store.open_output(out)
    assert back.layout == layout and back.options() == store.options()
    assert back.video_ids() == ["a", "b"]  # the prefix was applied: not "v_a"
    for video_id, array in VIDEOS.items():
        got = back.read(video_id)
        assert got.dtype == store.read(video_id).dtype and np.array_equal(got, array * 2)
    if layout in ("npz", "pt", "pickle-dir", "pickle", "hdf5"):
        assert back.options()["key"] == "emb"  # the source's key, sniffed, is kept on output
    back.close()


def test_two_stream_open_output_is_one_store_of_the_rgb_layout(tmp_path):
    NpyWriter(tmp_path / "pair" / "rgb", prefix="v_").write("a", VIDEOS["a"])
    NpyWriter(tmp_path / "pair" / "flow", prefix="v_").write("a", VIDEOS["a"] + 1)
    store = open_store(tmp_path / "pair", prefix="v_")
    with store.writer(tmp_path / "out") as writer:
        writer.write("a", store.read("a"))
    back = store.open_output(tmp_path / "out")
    assert back.layout == "npy" and back.options() == {"prefix": "v_", "suffix": ""}
    assert np.array_equal(back.read("a"), np.concatenate([VIDEOS["a"], VIDEOS["a"] + 1], axis=1))


# -- reads change nothing -------------------------------------------------------------------------
def test_reads_do_not_depend_on_what_was_read_before(tmp_path):
    (tmp_path / "npz").mkdir()
    np.savez(tmp_path / "npz" / "a.npz", x=VIDEOS["a"])  # only array: x
    np.savez(tmp_path / "npz" / "b.npz", feats=VIDEOS["b"], other=VIDEOS["b"] * 0)
    (tmp_path / "pkl").mkdir()
    (tmp_path / "pkl" / "a.pkl").write_bytes(pickle.dumps({"x": VIDEOS["a"]}))
    (tmp_path / "pkl" / "b.pkl").write_bytes(pickle.dumps(VIDEOS["b"]))
    for folder in ("npz", "pkl"):
        forwards, backwards = open_store(tmp_path / folder), open_store(tmp_path / folder)
        options = forwards.options()
        assert options["key"] == "x"  # sniffed from the first video
        got_forwards = [forwards.read(v) for v in ("a", "b")]
        got_backwards = [backwards.read(v) for v in ("b", "a")][::-1]
        for one, other, expected in zip(got_forwards, got_backwards, VIDEOS.values()):
            assert np.array_equal(one, expected) and np.array_equal(other, expected)
        assert forwards.options() == backwards.options() == options


def test_one_file_pickle_options_do_not_wait_for_a_read(tmp_path):
    (tmp_path / "f.pkl").write_bytes(pickle.dumps({"a": {"emb": VIDEOS["a"]}}))
    store = open_store(tmp_path / "f.pkl")
    assert store.options() == {"key": "emb"}  # before any read
    store.read("a")
    assert store.options() == {"key": "emb"}


# -- the shared helpers ---------------------------------------------------------------------------
def test_pick_key_prefers_feature_names_then_the_only_entry():
    assert pick_key(["fps", "features", "feats"], None, "f") == "feats"
    assert pick_key(["emb"], None, "f") == "emb"
    assert pick_key(["emb", "x"], "x", "f") == "x"
    with pytest.raises(StoreError, match=r"f: no array 'y' \(has \['emb', 'x'\]\); check --key"):
        pick_key(["x", "emb"], "y", "f")
    with pytest.raises(StoreError, match=r"g: holds datasets \['emb', 'x'\]; say which .*--key NAME"):
        pick_key(["x", "emb"], None, "g", noun="dataset")
    with pytest.raises(StoreError, match="f: holds no arrays"):
        pick_key([], None, "f")


def test_select_feature_filters_entries_and_passes_bare_values():
    array = np.zeros((2, 2))
    assert select_feature(array, "ignored", "f") == (array, None)
    value, key = select_feature({"fps": 30, "emb": array}, None, "f", entry_types=(np.ndarray,))
    assert value is array and key == "emb"
    with pytest.raises(StoreError, match=r"holds arrays \['emb', 'fps'\]"):
        select_feature({"fps": 30, "emb": array}, None, "f")  # without a type filter both count


def test_file_looks_like_by_suffix_or_signature(tmp_path):
    (tmp_path / "feats.bin").write_bytes(HDF5_SIGNATURE + b"rest")
    (tmp_path / "feats.pt").write_bytes(b"\x80\x02rest")
    (tmp_path / "feats.h5").write_bytes(b"anything")
    assert file_looks_like(tmp_path / "feats.bin", (".h5",), HDF5_SIGNATURE)
    assert file_looks_like(tmp_path / "feats.h5", (".h5",), HDF5_SIGNATURE)
    assert not file_looks_like(tmp_path / "feats.pt", (".pkl",), b"\x80", foreign_suffixes=(".pt",))
    assert file_looks_like(tmp_path / "feats.pt", (".pkl",), b"\x80")
    assert not file_looks_like(tmp_path, (".h5",), HDF5_SIGNATURE)  # a directory
    assert LAYOUTS["hdf5"].detect(tmp_path / "feats.bin") and not LAYOUTS["pickle"].detect(tmp_path / "feats.pt")
