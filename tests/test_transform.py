import hashlib
import json

import numpy as np
import pytest
import torch

from sola.adapt.adapter import SoLaAdapter
from sola.adapt.estimator import SoLa
from sola.adapt.transform import apply_adapter, transform_store
from sola.core.errors import ConfigError, StoreError
from sola.data.stores import open_store
from tests.conftest import write_npy_store


def digest(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


@pytest.fixture
def adapter():
    torch.manual_seed(0)
    model = SoLaAdapter(8, hidden_dim=16)
    with torch.no_grad():
        model.alpha.fill_(0.7)
    return model


def test_transform_store_writes_every_video_and_keeps_inputs(tmp_path, adapter):
    root = write_npy_store(tmp_path / "in", [5, 40, 300], dim=8, dtype=np.float64)
    before = digest(root)
    store = open_store(root)
    summary = transform_store(adapter, store, tmp_path / "out", chunk_size=64, progress=False)
    assert summary["written"] == 3 and summary["skipped"] == 0 and summary["snippets"] == 345
    assert digest(root) == before
    out = open_store(tmp_path / "out")
    assert out.video_ids() == store.video_ids()
    for video_id in store.video_ids():
        result = out.read(video_id)
        assert result.dtype == np.float64 and result.shape == store.read(video_id).shape
        np.testing.assert_allclose(result, apply_adapter(adapter, store.read(video_id)), atol=1e-6)
        assert not np.allclose(result, store.read(video_id))
    assert not list((tmp_path / "out").glob(".*"))  # no temporaries left


def test_rerun_skips_finished_videos_and_completes_missing(tmp_path, adapter):
    root = write_npy_store(tmp_path / "in", [30, 31, 32], dim=8)
    store = open_store(root)
    transform_store(adapter, store, tmp_path / "out", progress=False)
    reference = digest(tmp_path / "out")
    (tmp_path / "out" / "vid001.npy").unlink()
    summary = transform_store(adapter, store, tmp_path / "out", progress=False)
    assert (summary["written"], summary["skipped"]) == (1, 2)
    assert digest(tmp_path / "out") == reference


def test_prefix_suffix_preserved(tmp_path, adapter):
    root = tmp_path / "in"
    root.mkdir()
    np.save(root / "v_abc_rgb.npy", np.ones((9, 8), dtype=np.float32))
    store = open_store(root, prefix="v_", suffix="_rgb")
    assert store.video_ids() == ["abc"]
    transform_store(adapter, store, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "v_abc_rgb.npy").is_file()


def test_refuses_to_overwrite_the_input(tmp_path, adapter):
    root = write_npy_store(tmp_path / "in", [30], dim=8)
    with pytest.raises(ConfigError, match="inputs are never overwritten"):  # sola.core.paths.check_outputs
        transform_store(adapter, open_store(root), root, progress=False)
    with pytest.raises(ConfigError, match="lies inside the input store"):
        transform_store(adapter, open_store(root), root / "sola", progress=False)


def test_estimator_api(synthetic_small, tmp_path):
    from sola.core.config import load_config

    config = load_config(None, {"adapter.hidden_dim": 16, "matching.projector_dim": 16, "fit.epochs": 2,
                                "fit.batch_size": 16, "fit.lr": 1e-3})
    model = SoLa(config).fit(synthetic_small / "features", progress=False, log=lambda s: None)
    out = model.transform(synthetic_small / "features", tmp_path / "sola", progress=False)
    assert len(out) == 24
    first = out.video_ids()[0]
    np.testing.assert_allclose(
        out.read(first), model.transform_array(open_store(synthetic_small / "features").read(first)), atol=1e-6
    )
    model.save(tmp_path / "a.safetensors")
    again = SoLa.load(tmp_path / "a.safetensors")
    assert again.adapter_.gate == pytest.approx(model.adapter_.gate)


def test_nan_policy(tmp_path, adapter):
    root = write_npy_store(tmp_path / "in", [30, 30], dim=8)
    bad = np.load(root / "vid001.npy")
    bad[3, 2] = np.nan
    np.save(root / "vid001.npy", bad)
    store = open_store(root)
    with pytest.raises(StoreError, match="vid001.*--nan-policy"):
        transform_store(adapter, store, tmp_path / "error", progress=False)
    summary = transform_store(adapter, store, tmp_path / "drop", progress=False, nan_policy="drop-video")
    assert (summary["written"], summary["dropped"]) == (1, 1)
    assert sorted(p.name for p in (tmp_path / "drop").glob("*.npy")) == ["vid000.npy"]
    transform_store(adapter, store, tmp_path / "zero", progress=False, nan_policy="zero")
    zeroed = np.nan_to_num(bad, nan=0.0)
    np.testing.assert_allclose(np.load(tmp_path / "zero" / "vid001.npy"), apply_adapter(adapter, zeroed), atol=1e-6)
    assert np.isnan(np.load(root / "vid001.npy")).sum() == 1  # input untouched


def tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.mark.parametrize("layout", ["npy", "hdf5"])
def test_an_output_of_another_adapter_input_or_setting_is_refused(tmp_path, adapter, layout):
    from sola.adapt.transform import PROVENANCE
    from sola.data.stores.hdf5 import Hdf5Writer
    from sola.data.stores.npy import NpyWriter

    name = "in.h5" if layout == "hdf5" else "in"
    for folder in ("a", "b"):  # two input stores holding the same videos
        writer = (Hdf5Writer if layout == "hdf5" else NpyWriter)(tmp_path / folder / name)
        for i in range(3):
            writer.write(f"vid{i:03d}", np.random.default_rng(i).standard_normal((30 + i, 8)).astype(np.float32))
        writer.close()
    store, out = open_store(tmp_path / "a" / name), tmp_path / "out" / name
    transform_store(adapter, store, out, progress=False)
    record = out / PROVENANCE if layout == "npy" else out.with_name(f"{name}.{PROVENANCE}")  # beside one file
    assert json.loads(record.read_text())["input"]["path"] == str(store.path.resolve())
    reference = tree_digest(tmp_path)
    other = SoLaAdapter(8, hidden_dim=16)
    with pytest.raises(StoreError, match="another adapter"):
        transform_store(other, store, out, progress=False)
    with pytest.raises(StoreError, match="another --nan-policy"):
        transform_store(adapter, store, out, progress=False, nan_policy="zero")
    with pytest.raises(StoreError, match="another input store"):
        transform_store(adapter, open_store(tmp_path / "b" / name), out, progress=False)
    assert tree_digest(tmp_path) == reference
    assert transform_store(adapter, store, out, progress=False)["skipped"] == 3  # the same run resumes


def test_a_killed_run_is_not_resumed_with_another_adapter(tmp_path, adapter):
    root = write_npy_store(tmp_path / "in", [30, 31, 32], dim=8)
    store = open_store(root)
    transform_store(adapter, store, tmp_path / "out", progress=False)
    (tmp_path / "out" / "vid002.npy").unlink()  # as if killed before the last video
    other = SoLaAdapter(8, hidden_dim=16)
    with pytest.raises(StoreError, match="another adapter.*never mixed"):
        transform_store(other, store, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "vid002.npy").exists()


@pytest.mark.parametrize("link", [False, True])
def test_outputs_without_a_record_are_refused(tmp_path, adapter, link):
    root = write_npy_store(tmp_path / "in", [30, 31], dim=8)
    out = tmp_path / "out"
    out.mkdir()
    for file in root.iterdir():  # a directory pre-filled with the inputs passes for adapted features
        (out / file.name).symlink_to(file) if link else (out / file.name).write_bytes(file.read_bytes())
    with pytest.raises(StoreError, match="no sola_transform.json"):
        transform_store(adapter, open_store(root), out, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["vid000.npy", "vid001.npy"]


def test_transform_of_a_two_stream_store_returns_the_written_store(tmp_path):
    from sola.data.stores.twostream import TwoStreamStore
    from sola.experiments.compare import sola_store

    rgb = write_npy_store(tmp_path / "rgb", [30, 40], dim=4, seed=1)
    flow = write_npy_store(tmp_path / "flow", [30, 40], dim=4, seed=2)
    store = TwoStreamStore(rgb=open_store(rgb), flow=open_store(flow))
    torch.manual_seed(0)
    model = SoLa()
    model.adapter_ = SoLaAdapter(8, hidden_dim=16)
    with torch.no_grad():
        model.adapter_.alpha.fill_(0.5)
    out = model.transform(store, tmp_path / "out", progress=False)
    assert out.path == tmp_path / "out" and out.dim() == 8
    np.testing.assert_allclose(out.read("vid000"), apply_adapter(model.adapter_, store.read("vid000")), atol=1e-6)
    adapted, _ = sola_store(store, tmp_path / "cmp", adapter=model.adapter_, select=False, log=lambda line: None)
    assert adapted.path == tmp_path / "cmp" / "sola_features" and adapted.dim() == 8
    assert not np.allclose(adapted.read("vid001"), store.read("vid001"))


def test_transform_only_the_videos_asked_for(tmp_path, adapter):
    store = open_store(write_npy_store(tmp_path / "in", [20, 30, 25], dim=8))
    summary = transform_store(adapter, store, tmp_path / "out", progress=False, video_ids=["vid002", "vid000"])
    assert summary["videos"] == 2 and summary["written"] == 2
    assert sorted(open_store(tmp_path / "out").video_ids()) == ["vid000", "vid002"]
    with pytest.raises(StoreError, match="no video 'nope'"):
        transform_store(adapter, store, tmp_path / "other", progress=False, video_ids=["vid000", "nope"])


@pytest.mark.parametrize("layout", ["npy", "csv", "npz", "pt", "pickle-dir", "pickle", "hdf5", "twostream"])
def test_the_provenance_record_is_never_read_as_a_video(tmp_path, layout):
    from sola.adapt.transform import PROVENANCE
    from tests.test_stores_contract import SOURCES, VIDEOS, _source

    if layout == "twostream":  # rgb/ + flow/ in; one store of the RGB layout out
        (tmp_path / "in").mkdir()
        for stream in ("rgb", "flow"):
            _source(tmp_path / stream, "npy")  # writes STREAM/src
            (tmp_path / stream / "src").rename(tmp_path / "in" / stream)
        options = {"prefix": "v_", "suffix": "_rgb"}
        store = open_store(tmp_path / "in", **options)
    else:
        store, options = _source(tmp_path / "in", layout), SOURCES[layout][2]
    out = tmp_path / "out" / SOURCES["npy" if layout == "twostream" else layout][0]
    adapter = SoLaAdapter(store.dim(), hidden_dim=4)
    transform_store(adapter, store, out, progress=False)
    record = out / PROVENANCE if out.is_dir() else out.with_name(f"{out.name}.{PROVENANCE}")
    assert record.is_file()
    assert open_store(out, **options).video_ids() == sorted(VIDEOS)  # reopened as the input was opened
    # and with the layout detected from the path (the HDF5 group still named): the same videos, nothing more
    detected = open_store(out, **{k: v for k, v in options.items() if k == "group"})
    assert detected.layout == (store.rgb.layout if layout == "twostream" else layout)
    assert len(detected.video_ids()) == len(VIDEOS)
    # A head that lists the folder by the layout's extension sees the videos only
    if out.is_dir():
        videos = [p for p in out.iterdir() if p.name != PROVENANCE]
        assert len(videos) == len(VIDEOS) and not any(p.suffix == ".json" for p in videos)
