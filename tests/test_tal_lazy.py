"""The TAL head in bounded memory: lazy items read per batch give the same training as in-memory items."""

import h5py
import numpy as np
import pytest
import torch

from sola.data.annotations import load_annotations
from sola.data.stores import open_store
from sola.data.stores.csv import CsvWriter
from sola.tal.config import load_tal_config
from sola.tal.data import ResizedFeatures, StoredFeatures, make_item, resize_item
from sola.tal.experiment import build_items, class_names, fit_config_to_data
from sola.tal.train import train_head

# 2 warm-up + 2 epochs; dropout and drop-path on, and windows cut (max_seq_len 64 < video lengths)
TINY = {"model.embd_dim": 16, "model.head_dim": 16, "model.n_head": 2, "model.window_size": 5,
        "model.dropout": 0.1, "model.drop_path": 0.1, "data.max_seq_len": 64, "train.epochs": 2,
        "train.warmup_epochs": 2, "train.batch_size": 4, "train.lr": 1e-2, "train.ema_decay": 0.5}


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def setup(synthetic_small, store, lazy=True, cache_dir=None, **overrides):
    annotations = load_annotations(synthetic_small / "annotations.json")
    base = load_tal_config("tal_synthetic_cpu", {**TINY, **overrides})
    names = class_names(annotations, base)
    config = fit_config_to_data(base, store.dim(), len(names))
    return build_items(store, annotations, "training", config, names, lazy=lazy, cache_dir=cache_dir), config


def weights(items, config):
    return train_head(items, config, seed=0, progress=False).model.state_dict()


def assert_same(a, b):
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lazy_items_train_exactly_like_in_memory_items(synthetic_small):
    store = open_store(synthetic_small / "features")
    lazy, config = setup(synthetic_small, store)
    eager, _ = setup(synthetic_small, store, lazy=False)
    assert all(isinstance(item["feats"], StoredFeatures) for item in lazy)
    assert all(isinstance(item["feats"], torch.Tensor) for item in eager)
    first = lazy[0]["feats"]
    assert torch.equal(first[5:17].load(), torch.from_numpy(store.read(lazy[0]["video_id"])[5:17]))
    reference = weights(eager, config)
    assert_same(weights(lazy, config), reference)
    config.train.num_workers = 2  # batches read ahead in two worker processes: same batches, same order
    assert_same(weights(lazy, config), reference)


def test_hdf5_and_cached_csv_items_match_the_npy_ones(synthetic_small, tmp_path):
    npy = open_store(synthetic_small / "features")
    with h5py.File(tmp_path / "features.h5", "w") as handle:
        for video_id in npy.video_ids():
            handle.create_dataset(video_id, data=npy.read(video_id))
    with CsvWriter(tmp_path / "csv") as writer:
        for video_id in npy.video_ids():
            writer.write(video_id, npy.read(video_id))
    reference_items, config = setup(synthetic_small, npy)
    reference = weights(reference_items, config)

    hdf5_items, _ = setup(synthetic_small, open_store(tmp_path / "features.h5"))
    assert all(isinstance(item["feats"], StoredFeatures) for item in hdf5_items)
    config.train.num_workers = 2  # each worker opens the HDF5 file itself
    assert_same(weights(hdf5_items, config), reference)
    config.train.num_workers = 0

    csv = open_store(tmp_path / "csv")
    cached_items, _ = setup(synthetic_small, csv, cache_dir=tmp_path / "cache")
    assert all(isinstance(item["feats"], StoredFeatures) for item in cached_items)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(cached_items)
    csv_reference = weights(setup(synthetic_small, csv, lazy=False)[0], config)
    assert_same(weights(cached_items, config), csv_reference)


def test_resized_lazy_features_equal_resizing_in_memory():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(37, 6)).astype(np.float32)
    eager = make_item("v", feats, [[3.0, 9.0]], [0], fps=2.0, feat_stride=4.0, num_frames=8.0)

    class Memory:
        def window_source(self, video_id):
            return feats

    lazy = dict(eager, feats=StoredFeatures(Memory(), "v", feats.shape))
    resized_eager, resized_lazy = resize_item(eager, 16), resize_item(lazy, 16)
    assert isinstance(resized_lazy["feats"], ResizedFeatures) and resized_lazy["feats"].shape == (16, 6)
    assert torch.equal(resized_lazy["feats"].load(), resized_eager["feats"])
    assert torch.equal(resized_lazy["feats"][4:9].load(), resized_eager["feats"][4:9])
    assert torch.equal(resized_lazy["segments"], resized_eager["segments"])
    with pytest.raises(ValueError, match="contiguous"):
        resized_lazy["feats"][::2]
