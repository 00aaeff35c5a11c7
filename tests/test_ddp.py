"""Two gloo processes on the CPU through torchrun: DDP training and sharded transform."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from sola.adapt.adapter import load_adapter
from sola.adapt.transform import apply_adapter


def torchrun(*args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SOLA_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "sola", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


@pytest.mark.slow
def test_two_process_gloo_train_and_transform(synthetic_small, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("adapter: {hidden_dim: 16}\nmatching: {projector_dim: 16}\n"
                      "fit: {batch_size: 16, lr: 0.002, windows_per_video: 2, checkpoint_every: 1}\n")
    run = tmp_path / "run"
    result = torchrun("train", str(synthetic_small / "features"), "--out", str(run), "--config", str(config),
                      "--epochs", "2", "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    # 24 videos x 2 windows split over 2 ranks with 8 windows per rank and step: 3 steps each.
    assert records[0]["windows"] == 48 and records[0]["steps"] == 3
    assert load_file(run / "checkpoints" / "epoch_0001.safetensors").keys() == load_file(
        run / "adapter.safetensors").keys()
    adapter = load_adapter(run)
    assert adapter.gate != 0.0

    out = tmp_path / "sola"
    result = torchrun("transform", str(synthetic_small / "features"), "--adapter", str(run), "--out", str(out),
                      "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    inputs = sorted((synthetic_small / "features").glob("*.npy"))
    assert sorted(p.name for p in out.glob("*.npy")) == [p.name for p in inputs]
    for path in inputs[:3]:
        np.testing.assert_allclose(np.load(out / path.name), apply_adapter(adapter, np.load(path)), atol=1e-5)


@pytest.mark.slow
def test_two_process_transform_into_one_hdf5_file(synthetic_small, tmp_path):
    """Both ranks write their videos as parts; one process assembles the single output file."""
    import torch

    from sola.adapt.adapter import SoLaAdapter, save_adapter
    from sola.data.stores import open_store
    from sola.data.stores.hdf5 import Hdf5Writer

    source = open_store(synthetic_small / "features")
    writer = Hdf5Writer(tmp_path / "features.h5")
    for video_id in source.video_ids():
        writer.write(video_id, source.read(video_id))
    writer.close()
    torch.manual_seed(0)
    adapter = SoLaAdapter(32, hidden_dim=16)
    with torch.no_grad():
        adapter.alpha.fill_(0.5)
    save_adapter(adapter, tmp_path / "adapter.safetensors")
    out = tmp_path / "sola.h5"
    result = torchrun("transform", str(tmp_path / "features.h5"), "--adapter", str(tmp_path / "adapter.safetensors"),
                      "--out", str(out), "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    adapted = open_store(out)
    assert adapted.video_ids() == source.video_ids()
    for video_id in source.video_ids()[:3]:
        np.testing.assert_allclose(adapted.read(video_id), apply_adapter(adapter, source.read(video_id)), atol=1e-5)
    assert not (tmp_path / ".sola.h5.parts").exists()
