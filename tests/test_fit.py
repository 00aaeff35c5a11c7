import json

import pytest
import torch
from safetensors.torch import load_file

from sola.adapt.fit import fit_adapter
from sola.core.config import load_config
from sola.core.errors import CheckpointError
from sola.data.stores import open_store

SMALL = {
    "adapter.hidden_dim": 32,
    "matching.projector_dim": 32,
    "fit.windows_per_video": 4,
    "fit.batch_size": 32,
    "fit.lr": 3e-3,
    "fit.checkpoint_every": 2,
}


def small_config(**extra):
    return load_config(None, {**SMALL, **extra})


def test_loss_falls_and_run_dir_is_complete(synthetic_small, tmp_path):
    store = open_store(synthetic_small / "features")
    run = tmp_path / "run"
    adapter = fit_adapter(store, small_config(**{"fit.epochs": 6}), run, progress=False, log=lambda s: None)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[-1]["loss"] < records[0]["loss"] - 0.02
    assert all({"loss", "seconds", "gate", "steps"} <= set(r) for r in records)
    assert records[0]["steps"] == 3  # 24 videos x 4 windows / batch 32
    assert records[-1]["gate"] == pytest.approx(adapter.gate)
    assert adapter.gate != 0.0
    for epoch in (2, 4, 6):
        assert (run / "checkpoints" / f"epoch_{epoch:04d}.safetensors").is_file()
    assert not any("projector" in key for key in load_file(run / "adapter.safetensors"))
    assert (run / "config.yaml").is_file() and (run / "state.safetensors").is_file()


def test_resume_is_bitwise_equal_to_an_uninterrupted_run(synthetic_small, tmp_path):
    store = open_store(synthetic_small / "features")
    quiet = dict(progress=False, log=lambda s: None)
    fit_adapter(store, small_config(**{"fit.epochs": 4}), tmp_path / "whole", **quiet)
    fit_adapter(store, small_config(**{"fit.epochs": 2}), tmp_path / "split", **quiet)
    fit_adapter(store, small_config(**{"fit.epochs": 4}), tmp_path / "split", resume=True, **quiet)
    for name in ("adapter.safetensors", "state.safetensors", "checkpoints/epoch_0004.safetensors"):
        whole, split = load_file(tmp_path / "whole" / name), load_file(tmp_path / "split" / name)
        assert whole.keys() == split.keys()
        for key in whole:
            assert torch.equal(whole[key], split[key]), (name, key)
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    whole_lines = (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in lines] == [json.loads(x)["loss"] for x in whole_lines]


def test_existing_run_needs_resume(synthetic_small, tmp_path):
    store = open_store(synthetic_small / "features")
    config = small_config(**{"fit.epochs": 1})
    fit_adapter(store, config, tmp_path / "run", progress=False, log=lambda s: None)
    with pytest.raises(CheckpointError, match="--resume"):
        fit_adapter(store, config, tmp_path / "run", progress=False, log=lambda s: None)
    # resuming a run with no finished epoch (killed before one) starts it, and says so
    lines = []
    fit_adapter(store, config, tmp_path / "fresh", resume=True, progress=False, log=lines.append)
    assert any("no finished epoch" in line for line in lines)
    assert (tmp_path / "fresh" / "metrics.jsonl").read_text().count("\n") == 1


def test_fit_on_a_csv_store_equals_the_npy_store_and_removes_its_cache(synthetic_small, tmp_path):
    from sola.data.stores.csv import CsvWriter

    npy = open_store(synthetic_small / "features")
    writer = CsvWriter(tmp_path / "csv")
    for video_id in npy.video_ids():
        writer.write(video_id, npy.read(video_id))
    writer.close()
    config = small_config(**{"fit.epochs": 2})
    quiet = dict(progress=False, log=lambda s: None)
    fit_adapter(npy, config, tmp_path / "run_npy", **quiet)
    fit_adapter(open_store(tmp_path / "csv", layout="csv"), config, tmp_path / "run_csv", **quiet)
    a, b = load_file(tmp_path / "run_npy" / "adapter.safetensors"), load_file(tmp_path / "run_csv" / "adapter.safetensors")
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert not (tmp_path / "run_csv" / "window_cache").exists()


def test_library_refuses_to_resume_on_other_features(synthetic_small, tmp_path):
    from tests.conftest import write_npy_store

    store = open_store(synthetic_small / "features")
    run = tmp_path / "run"
    fit_adapter(store, small_config(**{"fit.epochs": 1}), run, progress=False, log=lambda s: None)
    other = open_store(write_npy_store(tmp_path / "other", [40, 50], dim=32))
    with pytest.raises(CheckpointError, match="was fitted on"):
        fit_adapter(other, small_config(**{"fit.epochs": 2}), run, resume=True, progress=False, log=lambda s: None)
    assert json.loads((run / "run.json").read_text())["features"] == str(store.path.resolve())


def test_prefetching_batches_changes_nothing(synthetic_small):
    store = open_store(synthetic_small / "features")
    quiet = dict(progress=False, log=lambda s: None)
    inline = fit_adapter(store, small_config(**{"fit.epochs": 2, "fit.prefetch": 0}), **quiet)
    ahead = fit_adapter(store, small_config(**{"fit.epochs": 2, "fit.prefetch": 3}), **quiet)
    assert all(torch.equal(a, b) for a, b in zip(inline.state_dict().values(), ahead.state_dict().values()))
    budget = fit_adapter(store, small_config(**{"fit.steps": 4, "fit.prefetch": 3}), **quiet)  # stops mid-epoch
    assert budget.gate != 0.0
