import numpy as np
import pytest

from sola.adapt.sampling import epoch_plan, open_window_source
from sola.core.errors import StoreError
from sola.data.stores import open_store
from tests.conftest import write_npy_store


def test_epoch_plan_is_deterministic_and_in_bounds():
    lengths = np.array([23, 30, 100, 57])
    videos, starts = epoch_plan(lengths, 23, 3, seed=5, epoch=2)
    again = epoch_plan(lengths, 23, 3, seed=5, epoch=2)
    assert np.array_equal(videos, again[0]) and np.array_equal(starts, again[1])
    assert sorted(videos.tolist()) == sorted([0, 1, 2, 3] * 3)
    assert np.all(starts >= 0) and np.all(starts + 23 <= lengths[videos])
    assert np.all(starts[videos == 0] == 0)  # a video of exactly L snippets has one window
    other = epoch_plan(lengths, 23, 3, seed=5, epoch=3)
    assert not (np.array_equal(videos, other[0]) and np.array_equal(starts, other[1]))


def test_ranks_get_disjoint_equal_shards():
    lengths = np.full(10, 50)
    shards = [epoch_plan(lengths, 23, 2, seed=0, epoch=0, rank=r, world_size=3)[0] for r in range(3)]
    assert len({len(s) for s in shards}) == 1  # equal steps on every rank
    sets = [set(s.tolist()) for s in shards]
    assert set().union(*sets) == set(range(10))
    # 10 videos on 3 ranks: padded to 12 by wrapping, so at most 2 videos appear twice.
    assert sum(len(s) for s in sets) - 10 <= 2
    even = [set(epoch_plan(np.full(9, 50), 23, 1, 0, 0, r, 3)[0].tolist()) for r in range(3)]
    assert all(a.isdisjoint(b) for i, a in enumerate(even) for b in even[i + 1 :])


def test_window_source_skips_short_videos_and_reads_windows(tmp_path):
    root = write_npy_store(tmp_path / "f", [10, 30, 23], dim=4)
    source = open_window_source(open_store(root), 23)
    assert source.video_ids == ["vid001", "vid002"] and source.skipped == ["vid000"]
    batch = source.batch(np.array([0, 1]), np.array([7, 0]), 23)
    assert batch.shape == (2, 23, 4) and batch.dtype == np.float32
    assert np.array_equal(batch[0], np.load(root / "vid001.npy")[7:30])


def test_window_source_errors(tmp_path):
    short = write_npy_store(tmp_path / "short", [5, 6], dim=4)
    with pytest.raises(StoreError, match="at least 23 snippets"):
        open_window_source(open_store(short), 23)
    mixed = write_npy_store(tmp_path / "mixed", [30], dim=4)
    np.save(mixed / "other.npy", np.zeros((30, 5), dtype=np.float32))
    with pytest.raises(StoreError, match="feature dim"):
        open_window_source(open_store(mixed), 23)
    nan = write_npy_store(tmp_path / "nan", [30], dim=4)
    bad = np.load(nan / "vid000.npy")
    bad[:] = np.nan
    np.save(nan / "vid000.npy", bad)
    with pytest.raises(StoreError, match="vid000.*--nan-policy zero"):
        open_window_source(open_store(nan), 23)


@pytest.mark.parametrize("layout", ["npy", "hdf5", "csv"])
def test_nan_anywhere_is_found_up_front_naming_the_video(tmp_path, layout):
    from sola.adapt.sampling import all_finite
    from sola.data.stores.csv import CsvWriter
    from sola.data.stores.hdf5 import Hdf5Writer
    from sola.data.stores.npy import NpyWriter

    writer_cls, out = {"npy": (NpyWriter, "f"), "hdf5": (Hdf5Writer, "f.h5"), "csv": (CsvWriter, "f")}[layout]
    writer = writer_cls(tmp_path / out)
    rng = np.random.default_rng(0)
    for index, row in enumerate([None, 5, 525]):  # clean; a NaN where no window may look; the last row
        features = rng.standard_normal((526, 4)).astype(np.float32)
        if row is not None:
            features[row, 1] = np.nan if index == 1 else np.inf
        writer.write(f"vid{index}", features)
    writer.close()
    store = open_store(tmp_path / out)
    for index, clean in enumerate([True, False, False]):
        assert all_finite(store.window_source(f"vid{index}"), values=64) is clean  # 16 rows a block
    with pytest.raises(StoreError, match="'vid1'"):
        open_window_source(store, 23, cache_dir=tmp_path / "cache")
    dropped = open_window_source(store, 23, nan_policy="drop-video", cache_dir=tmp_path / "cache")
    assert dropped.video_ids == ["vid0"] and dropped.dropped == ["vid1", "vid2"]


def test_nan_policies_in_training_windows(tmp_path):
    root = write_npy_store(tmp_path / "f", [30, 30], dim=4)
    bad = np.load(root / "vid001.npy")
    bad[5] = np.inf
    np.save(root / "vid001.npy", bad)
    dropped = open_window_source(open_store(root), 23, nan_policy="drop-video")
    assert dropped.video_ids == ["vid000"] and dropped.dropped == ["vid001"]
    zero = open_window_source(open_store(root), 23, nan_policy="zero")
    batch = zero.batch(np.array([1]), np.array([0]), 23)
    assert np.isfinite(batch).all() and np.all(batch[0, 5] == 0)


def test_layouts_without_random_access_are_cached_and_read_by_rows(tmp_path):
    from sola.data.stores.csv import CsvWriter
    from sola.data.stores.npy import NpyRows

    root = write_npy_store(tmp_path / "npy", [30, 40], dim=4)
    writer = CsvWriter(tmp_path / "csv")
    for name in ("vid000", "vid001"):
        writer.write(name, np.load(root / f"{name}.npy"))
    writer.close()
    csv_store = open_store(tmp_path / "csv", layout="csv")
    assert not csv_store.random_access and open_store(root).random_access
    source = open_window_source(csv_store, 23, cache_dir=tmp_path / "cache")
    assert all(isinstance(s, NpyRows) for s in source.sources)  # no memory map: nothing stays resident
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    batch = source.batch(np.array([1]), np.array([5]), 23)
    assert np.array_equal(batch[0], np.load(root / "vid001.npy")[5:28])


def test_prefetch_yields_in_order_raises_and_stops_early():
    from sola.adapt.sampling import prefetch

    assert list(prefetch(lambda i: i * i, 6, depth=2)) == [0, 1, 4, 9, 16, 25]
    assert list(prefetch(lambda i: i, 3, depth=0)) == [0, 1, 2]

    def broken(i):
        if i == 2:
            raise ValueError("bad window")
        return i

    got = []
    with pytest.raises(ValueError, match="bad window"):
        for value in prefetch(broken, 5, depth=2):
            got.append(value)
    assert got == [0, 1]
    produced = []
    stream = prefetch(lambda i: produced.append(i) or i, 1000, depth=2)
    assert next(stream) == 0
    stream.close()  # the thread stops: it never reads the whole epoch
    assert len(produced) < 10
