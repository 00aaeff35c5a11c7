"""Every feature layout: write -> read round trips, detection, the real fixtures, two-stream input."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest

from sola.core.errors import StoreError
from sola.data.stores import LAYOUTS, open_store
from sola.data.stores.csv import CsvWriter
from sola.data.stores.hdf5 import Hdf5Writer
from sola.data.stores.npy import NpyWriter
from sola.data.stores.npz import NpzWriter
from sola.data.stores.pickle import PickleFileWriter
from sola.data.stores.pickle_dir import PickleDirWriter
from sola.data.stores.pt import PtWriter
from sola.data.stores.twostream import TwoStreamStore, resample_time

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
FEATURES = DATA / "features"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent (real fixtures)")

# layout -> (writer class, output name, open options)
WRITERS = {
    "npy": (NpyWriter, "feats", {}),
    "csv": (CsvWriter, "feats", {}),
    "hdf5": (Hdf5Writer, "feats.h5", {}),
    "npz": (NpzWriter, "feats", {}),
    "pt": (PtWriter, "feats", {}),
    "pickle-dir": (PickleDirWriter, "feats", {}),
    "pickle": (PickleFileWriter, "feats.pkl", {}),
}


def _videos(dtype) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {f"v_{i:03d}": (rng.standard_normal((4 + 3 * i, 6)) * 10 ** (i - 2)).astype(dtype) for i in range(4)}


def _write(layout: str, root: Path, videos: dict[str, np.ndarray]) -> Path:
    writer_cls, name, _ = WRITERS[layout]
    writer = writer_cls(root / name)
    for video_id, array in videos.items():
        writer.write(video_id, array)
    writer.close()
    return root / name


def _digest(path: Path) -> dict[str, str]:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return {str(p.relative_to(path.parent)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_every_layout_is_registered():
    assert set(WRITERS) | {"twostream"} == set(LAYOUTS)


@pytest.mark.parametrize("layout", sorted(WRITERS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_round_trip_keeps_values_and_dtype(tmp_path, layout, dtype):
    videos = _videos(dtype)
    path = _write(layout, tmp_path, videos)
    options = {"dtype": np.dtype(dtype).name} if layout == "csv" else {}
    store = open_store(path, **options)
    assert store.layout == layout
    assert store.video_ids() == sorted(videos)
    for video_id, array in videos.items():
        got = store.read(video_id)
        assert store.shape(video_id) == array.shape
        if layout == "csv":  # text holds no dtype: values exact at the read dtype
            assert np.array_equal(got, array.astype(got.dtype))
        else:
            assert got.dtype == array.dtype and np.array_equal(got, array)
        assert np.array_equal(np.asarray(store.window_source(video_id))[1:3], got[1:3])
    # the store's own writer reproduces the same bytes (format-preserving transform)
    again = store.writer(tmp_path / "again" / path.name)
    for video_id in store.video_ids():
        again.write(video_id, store.read(video_id))
    again.close()
    if layout != "csv" or dtype == np.float64:
        assert list(_digest(tmp_path / "again" / path.name).values()) == list(_digest(path).values())


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_writing_twice_is_byte_identical_and_resumes(tmp_path, layout):
    videos = _videos(np.float32)
    first = _write(layout, tmp_path / "a", videos)
    # a second output written in two sessions (the first one "killed" before close)
    writer_cls, name, _ = WRITERS[layout]
    partial = writer_cls(tmp_path / "b" / name)
    ids = sorted(videos)
    for video_id in ids[:2]:
        partial.write(video_id, videos[video_id])
    resumed = writer_cls(tmp_path / "b" / name)
    assert [resumed.has(v) for v in ids] == [True, True, False, False]
    for video_id in ids[2:]:
        resumed.write(video_id, videos[video_id])
    resumed.close()
    assert _digest(tmp_path / "b" / name) == {k: v for k, v in _digest(first).items()}
    assert not list((tmp_path / "b").glob(".*")), "temporary files or parts left behind"


def test_hdf5_is_read_lazily_and_keeps_groups_and_compression(tmp_path):
    import h5py

    path = tmp_path / "tsp.h5"
    with h5py.File(path, "w") as handle:
        for i in range(3):
            group = handle.create_group(f"vid{i}")
            group.create_dataset("feats", data=np.full((5 + i, 4), i, np.float32), compression="gzip")
    store = open_store(path)
    assert store.layout == "hdf5" and store.options()["key"] == "feats"
    window = store.window_source("vid2")
    assert isinstance(window, h5py.Dataset) and window[1:3].shape == (2, 4)
    writer = store.writer(tmp_path / "out.h5")
    for video_id in store.video_ids():
        writer.write(video_id, store.read(video_id) + 1)
    writer.close()
    with h5py.File(tmp_path / "out.h5") as handle:
        assert handle["vid1/feats"].compression == "gzip"
        assert float(handle["vid1/feats"][0, 0]) == 2.0


@needs_data
def test_real_csv_header_survives_a_rewrite(tmp_path):
    store = open_store(FEATURES / "anet_tsn_csv_rows")
    assert store.layout == "csv" and store.video_ids() == ["v_test1", "v_test2"]
    features = store.read("v_test1")
    assert features.shape == (5, 400) and features.dtype == np.float64
    writer = store.writer(tmp_path / "out")
    writer.write("v_test1", features)
    writer.close()
    source_header = (FEATURES / "anet_tsn_csv_rows" / "v_test1.csv").read_text().splitlines()[0]
    assert (tmp_path / "out" / "v_test1.csv").read_text().splitlines()[0] == source_header
    assert np.array_equal(open_store(tmp_path / "out").read("v_test1"), features)


@needs_data
def test_real_tsn_and_i3d_npy_with_prefix(tmp_path):
    tsn = open_store(FEATURES / "anet_tsn_100x400", prefix="v_")
    assert tsn.video_ids() == ["4Lu8ECLHvK4"]
    assert tsn.shape("4Lu8ECLHvK4") == (100, 400) and tsn.read("4Lu8ECLHvK4").dtype == np.float64
    i3d = open_store(FEATURES / "i3d_2048_two_stream")
    assert {v: i3d.shape(v) for v in i3d.video_ids()} == {"highjump": (164, 2048), "tennis26": (89, 2048)}
    # the same real features in every other layout read back equal
    video = i3d.read("tennis26")
    for layout in WRITERS:
        path = _write(layout, tmp_path / layout, {"tennis26": video})
        back = open_store(path).read("tennis26")
        assert np.array_equal(back, video), layout


@needs_data
def test_real_two_stream_split_recombines(tmp_path):
    i3d = open_store(FEATURES / "i3d_2048_two_stream")
    video = i3d.read("highjump")  # RGB 0-1023, flow 1024-2047
    rgb = NpyWriter(tmp_path / "pair" / "rgb")
    flow = NpyWriter(tmp_path / "pair" / "flow")
    rgb.write("highjump", video[:, :1024])
    flow.write("highjump", video[:-2, 1024:])  # flow two snippets shorter
    store = open_store(tmp_path / "pair")
    assert isinstance(store, TwoStreamStore)
    combined = store.read("highjump")
    assert combined.shape == (164, 2048) and store.shape("highjump") == (164, 2048)
    assert np.array_equal(combined[:, :1024], video[:, :1024])  # the longer stream is untouched
    assert np.array_equal(combined[0, 1024:], video[0, 1024:]) and np.array_equal(combined[-1, 1024:], video[-3, 1024:])


def test_resample_time_only_touches_time():
    features = np.stack([np.arange(5.0), 10 * np.arange(5.0)], axis=1)  # (5, 2), linear in time
    out = resample_time(features, 9)
    assert out.shape == (9, 2)
    assert np.allclose(out[:, 0], np.linspace(0, 4, 9)) and np.allclose(out[:, 1], np.linspace(0, 40, 9))


def test_two_stream_gap_and_unpaired_errors(tmp_path):
    NpyWriter(tmp_path / "rgb").write("a", np.zeros((20, 2), np.float32))
    NpyWriter(tmp_path / "flow").write("a", np.zeros((10, 2), np.float32))
    NpyWriter(tmp_path / "rgb").write("b", np.zeros((10, 2), np.float32))
    with pytest.raises(StoreError, match=r"1 only in RGB \['b'\]"):
        TwoStreamStore(rgb=tmp_path / "rgb", flow=tmp_path / "flow").video_ids()
    store = TwoStreamStore(rgb=tmp_path / "rgb", flow=tmp_path / "flow", unpaired="skip")
    assert store.video_ids() == ["a"] and store.rgb_only == ["b"]
    with pytest.raises(StoreError, match="RGB has 20 snippets but flow 10"):
        store.read("a")


def test_single_pickle_of_dicts_and_bytes_keys(tmp_path):
    path = tmp_path / "tsp_features.pkl"
    data = {b"vid1": {"feats": np.ones((3, 4), np.float32)}, "vid0": {"feats": np.zeros((2, 4), np.float32)}}
    path.write_bytes(pickle.dumps(data, protocol=2))
    store = open_store(path)
    assert store.layout == "pickle" and store.video_ids() == ["vid0", "vid1"]
    assert store.read("vid1").sum() == 12 and store.options() == {"key": "feats"}
    writer = store.writer(tmp_path / "out.pkl")
    writer.write("vid1", store.read("vid1"))
    writer.close()
    with open(tmp_path / "out.pkl", "rb") as handle:
        assert list(pickle.load(handle)["vid1"]) == ["feats"]


def test_layout_detection_is_exact(tmp_path):
    _write("npy", tmp_path / "mixed", {"a": np.zeros((2, 2), np.float32)})
    _write("csv", tmp_path / "mixed", {"b": np.zeros((2, 2), np.float32)})
    with pytest.raises(StoreError, match="several feature layouts.*--layout"):
        open_store(tmp_path / "mixed" / "feats")
    assert open_store(tmp_path / "mixed" / "feats", layout="csv").video_ids() == ["b"]
    with pytest.raises(StoreError, match="unknown feature layout"):
        open_store(tmp_path, layout="parquet")
    with pytest.raises(StoreError, match="does not take these options"):
        open_store(tmp_path / "mixed" / "feats", layout="npy", key="x")


def test_pandas_style_csv_with_index_column_and_numbered_header(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_text(",0,1,2\n0,1.5,2.5,3.5\n1,4.5,5.5,6.5\n")
    (tmp_path / "in" / "b.csv").write_text("0,1,2\n7.0,8.0,9.0\n")
    store = open_store(tmp_path / "in")
    assert store.read("a").tolist() == [[1.5, 2.5, 3.5], [4.5, 5.5, 6.5]]
    assert store.read("b").tolist() == [[7.0, 8.0, 9.0]]
    writer = store.writer(tmp_path / "out")
    for video_id in store.video_ids():
        writer.write(video_id, store.read(video_id))
    assert (tmp_path / "out" / "a.csv").read_text() == (tmp_path / "in" / "a.csv").read_text()
    assert (tmp_path / "out" / "b.csv").read_text() == (tmp_path / "in" / "b.csv").read_text()


@pytest.mark.parametrize("layout", sorted(WRITERS))
def test_opening_a_writer_leaves_other_writers_temporaries_alone(tmp_path, layout):
    # Under DDP every rank opens a writer while others may be writing: cleanup waits for close().
    writer_cls, name, _ = WRITERS[layout]
    first = writer_cls(tmp_path / name)
    folder = (tmp_path / name) if (tmp_path / name).is_dir() else first.parts
    in_flight = folder / ".vid.npy.x1y2.tmp"
    in_flight.write_bytes(b"being written")
    second = writer_cls(tmp_path / name)
    assert in_flight.exists()
    second.write("vid", np.zeros((2, 3), np.float32))
    second.close()
    assert not in_flight.exists()
    assert open_store(tmp_path / name).video_ids() == ["vid"]


def test_npy_rows_read_slices_without_a_memory_map(tmp_path):
    from sola.data.stores.npy import NpyRows

    array = np.arange(7 * 3, dtype=np.float32).reshape(7, 3)
    np.save(tmp_path / "a.npy", array)
    np.save(tmp_path / "f.npy", np.asfortranarray(array))
    store = open_store(tmp_path, layout="npy")
    rows = store.window_source("a")
    assert isinstance(rows, NpyRows) and rows.shape == (7, 3) and rows.dtype == np.float32
    assert np.array_equal(rows[2:5], array[2:5]) and np.array_equal(rows[5:99], array[5:])
    assert rows[4:4].shape == (0, 3) and np.array_equal(np.asarray(rows), array)
    assert np.array_equal(rows[[0, 6]], array[[0, 6]])  # other indices: through the whole array
    assert not isinstance(store.window_source("f"), NpyRows)  # Fortran order: a memory map instead
    assert np.array_equal(store.window_source("f")[1:3], array[1:3])
    assert store.shape("a") == (7, 3)
    data = (tmp_path / "a.npy").read_bytes()
    (tmp_path / "a.npy").write_bytes(data[:-8])  # truncated after the header was read
    with pytest.raises(StoreError, match="truncated"):
        rows[5:7]
