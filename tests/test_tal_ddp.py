"""The TAL head under torchrun: two gloo processes on the CPU train one model and predict one file."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from sola.data.annotations import load_annotations
from sola.data.stores import open_store
from sola.tal.config import load_tal_config
from sola.tal.experiment import build_items, class_names, fit_config_to_data
from sola.tal.train import train_head

TINY = ["--set", "model.embd_dim=16", "--set", "model.head_dim=16", "--set", "model.n_head=2",
        "--set", "train.epochs=2", "--set", "train.warmup_epochs=1", "--set", "train.batch_size=4",
        "--set", "train.device=cpu"]

WORKER = """
import sys, torch
from safetensors.torch import save_file
from sola.data.annotations import load_annotations
from sola.data.stores import open_store
from sola.tal.config import load_tal_config
from sola.tal.experiment import build_items, class_names, fit_config_to_data
from sola.tal.train import train_head

data, out, rank = sys.argv[1], sys.argv[2], int(__import__("os").environ["RANK"])
annotations = load_annotations(data + "/annotations.json")
store = open_store(data + "/features")
config = load_tal_config("tal_synthetic_cpu", {OVERRIDES})
names = class_names(annotations, config)
config = fit_config_to_data(config, store.dim(), len(names))
items = build_items(store, annotations, "training", config, names)
result = train_head(items, config, seed=0, progress=False)
save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, f"{out}/rank{rank}.safetensors")
"""

OVERRIDES = {"model.embd_dim": 16, "model.head_dim": 16, "model.n_head": 2, "train.epochs": 2,
             "train.warmup_epochs": 1, "train.batch_size": 4, "train.device": "cpu"}


def torchrun(*args, cwd, module=True):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SOLA_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               *(["-m", "sola"] if module else []), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env, cwd=cwd)


@pytest.mark.slow
def test_two_ranks_end_with_identical_weights_close_to_one_process(synthetic_small, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER).replace("{OVERRIDES}", repr(OVERRIDES)))
    result = torchrun(str(script), str(synthetic_small), str(tmp_path), cwd=tmp_path, module=False)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)

    # one process with the same global batch: the same data, so the same model up to float summation order
    # and the dropout masks (each rank draws its own)
    annotations = load_annotations(synthetic_small / "annotations.json")
    store = open_store(synthetic_small / "features")
    config = load_tal_config("tal_synthetic_cpu", OVERRIDES)
    names = class_names(annotations, config)
    config = fit_config_to_data(config, store.dim(), len(names))
    single = train_head(build_items(store, annotations, "training", config, names), config, seed=0,
                        progress=False).model.state_dict()
    distance = sum(float((single[k].float() - first[k].float()).norm()) for k in first if first[k].is_floating_point())
    scale = sum(float(single[k].float().norm()) for k in first if first[k].is_floating_point())
    assert distance < 0.2 * scale


@pytest.mark.slow
def test_torchrun_tal_train_resume_and_infer(synthetic_small, tmp_path):
    features, annotations = str(synthetic_small / "features"), str(synthetic_small / "annotations.json")
    run = tmp_path / "run"
    common = ["tal", "train", features, "--annotations", annotations, "--config", "tal_synthetic_cpu", *TINY,
              "--out", str(run), "--quiet"]
    result = torchrun(*common, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3
    assert all(r["world_size"] == 2 and r["rank_batch"] == 2 for r in records)  # the run says how it was trained
    assert "2 processes x 2 videos per step (global batch 4)" in result.stderr
    weights = (run / "weights.safetensors").read_bytes()
    result = torchrun(*common, "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "already trained" in result.stdout and (run / "weights.safetensors").read_bytes() == weights

    result = torchrun("tal", "infer", str(run), features, "--annotations", annotations, "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = json.loads((run / "predictions.json").read_text())["results"]
    validation = [v for v, e in json.loads((synthetic_small / "annotations.json").read_text())["database"].items()
                  if e["subset"] == "validation"]
    assert sorted(predictions) == sorted(validation)  # both ranks' shards gathered into one file


@pytest.mark.slow
def test_torchrun_compare_reports_once(synthetic_small, tmp_path):
    result = torchrun("compare", str(synthetic_small / "features"), "--annotations",
                      str(synthetic_small / "annotations.json"), "--config", "tal_synthetic_cpu", *TINY,
                      "--set", "fit.epochs=2", "--set", "fit.device=cpu", "--set", "adapter.hidden_dim=16",
                      "--set", "matching.projector_dim=16", "--set", "fit.batch_size=8", "--seeds", "1",
                      "--no-probe", "--out", str(tmp_path / "cmp"), "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("written to") == 1  # rank 0 reports
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(table["rows"]) == {"baseline", "sola"}
