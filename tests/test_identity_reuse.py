"""Work not done twice when the features are the original ones (issue 30, item 2).

`sola ablate`: a cell whose SoLa (or control) features are the original store itself (selection kept the
identity, an adapter of gate 0) takes the original row of the same features, head settings and seed instead
of training the same head again; never across head settings; resume still trains nothing.
`sola transform` with an identity adapter (gate 0, a run whose `best.safetensors` is the identity) writes
nothing and says so in one `note:` line, unless `--write-identity` asks for the copy.

The head and the probe are faked here (they are slow and their determinism is not the point): the fake
head's numbers depend on the store object, the head settings and the seed, so a wrong reuse shows.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import sola.experiments.ablate as ablate_module
import sola.experiments.compare as compare_module
import sola.tal.experiment as experiment_module
from sola.adapt.adapter import SoLaAdapter, save_adapter
from sola.adapt.transform import is_identity, transform_store
from sola.core.config import SoLaConfig
from sola.data.stores import open_store
from sola.experiments.ablate import ablate
from sola.tal.config import TalConfig
from tests.conftest import write_npy_store
from tests.hostile import bench, run, snapshot  # noqa: F401


# ---------------------------------------------------------------- ablate --------------------------------------


class FakeHead:
    """`run_experiment` that counts its calls; its mAP depends on the store object, train.epochs and the seed."""

    def __init__(self, original):
        self.original, self.calls = original, []

    def __call__(self, store, annotations, tal, seed=0, mode="baseline", **_):
        on_original = store is self.original
        self.calls.append({"original": on_original, "epochs": tal.train.epochs, "seed": seed, "mode": mode})
        value = 0.1 * tal.train.epochs + 0.01 * seed + (0.0 if on_original else 0.5)
        value += 0.2 if mode != "baseline" else 0.0
        return {"average_mAP": value, "mAP": {"0.5": value}, "seconds_per_epoch": 1.0}


@pytest.fixture
def grid(tmp_path, monkeypatch):
    """A store, the fake head, and selection faked: the identity kept everywhere but at adapter.kernel_size=3."""
    store = open_store(write_npy_store(tmp_path / "features", [30, 40, 50], dim=8))
    head = FakeHead(store)
    monkeypatch.setattr(experiment_module, "run_experiment", head)
    monkeypatch.setattr(ablate_module, "probe_row", lambda features, annotations: {
        "lbfgs_balanced_accuracy": 0.5 if features is store else 0.7, "sgd_balanced_accuracy": 0.4})

    def sola_store(data, where, annotations, tal, sola_config=None, **_):
        if sola_config.adapter.kernel_size == 3:  # a checkpoint wins: other features
            return open_store(data.path), {"best": "epoch_0002", "selected": True}
        return data, {"best": "identity", "selected": True}

    monkeypatch.setattr(compare_module, "sola_store", sola_store)
    lines = []

    def go(points, seeds=2, out="abl"):
        table = ablate(store, None, TalConfig(), points, tmp_path / out, seeds=seeds, sola_config=SoLaConfig(),
                       log=lines.append)
        return table, tmp_path / out

    return {"store": store, "head": head, "go": go, "lines": lines}


def results(out, point_prefix):
    """{seed: result.json} of the point whose folder starts with `point_prefix`."""
    found = sorted(out.glob(f"points/{point_prefix}-*/seed*/result.json"))
    return {int(path.parent.name.removeprefix("seed")): json.loads(path.read_text()) for path in found}


def originals(out):
    """{(original folder, seed): original row}."""
    return {(path.parent.name, int(path.stem.removeprefix("seed"))): json.loads(path.read_text())
            for path in out.glob("original/*/seed*.json")}


def test_ablate_trains_the_head_on_the_original_features_once_per_seed(grid):
    points = [{"adapter.kernel_size": 1}, {"adapter.kernel_size": 3}, {"adapter.kernel_size": 5},
              {"adapter.kernel_size": 5, "mode": "untrained"}, {"mode": "unified"}]
    table, out = grid["go"](points)
    calls = grid["head"].calls
    on_original = [c for c in calls if c["original"] and c["mode"] == "baseline"]
    assert sorted(c["seed"] for c in on_original) == [0, 1]  # was 2 per seed per identity point: 8
    assert len([c for c in calls if not c["original"]]) == 2  # kernel_size=3: other features, trained
    assert len([c for c in calls if c["mode"] == "unified"]) == 2  # unified training is never reused
    assert len(calls) == 6
    (folder,) = {name for name, _ in originals(out)}
    for prefix in ("adapter.kernel_size_1", "adapter.kernel_size_5", "adapter.kernel_size_5_mode_untrained"):
        cells = results(out, prefix)
        assert sorted(cells) == [0, 1]
        for seed, cell in cells.items():
            original = originals(out)[(folder, seed)]
            assert cell["reused_from"] == f"original/{folder}/seed{seed}.json", prefix
            for key, value in original.items():
                assert cell[key] == value, (prefix, key)
    assert all("reused_from" not in cell for cell in results(out, "adapter.kernel_size_3").values())
    rows = {row["name"]: row for row in table["rows"]}
    assert rows["adapter.kernel_size=1"]["reused"] == 2 and rows["adapter.kernel_size=3"]["reused"] == 0
    assert rows["adapter.kernel_size=1"]["columns"]["average_mAP"]["difference"]["mean"] == 0.0
    markdown = (out / "ablate.md").read_text()
    assert "not trained again" in markdown and "adapter.kernel_size=1 (2 of 2 seeds)" in markdown
    assert "mode=untrained" in markdown.split("not trained again")[1] and "kernel_size=3: " not in markdown
    assert sum("not trained again" in line for line in grid["lines"]) == 1  # said once


def test_ablate_resumes_reused_cells_without_training(grid):
    points = [{"adapter.kernel_size": 1}, {"adapter.kernel_size": 5}]
    table, out = grid["go"](points)
    assert len(grid["head"].calls) == 2
    next(iter(out.glob("points/adapter.kernel_size_5-*/seed1/result.json"))).unlink()  # interrupted there
    again, _ = grid["go"](points)
    assert len(grid["head"].calls) == 2  # the missing cell reused the saved original row: nothing trained
    assert json.dumps(again["rows"], default=str) == json.dumps(table["rows"], default=str)
    assert results(out, "adapter.kernel_size_5")[1]["reused_from"].endswith("seed1.json")


@pytest.mark.parametrize("points", [
    [{"train.epochs": 1}, {"train.epochs": 2}],  # a grid over a head setting
    [{"train.epochs": 1, "adapter.kernel_size": 1}, {"train.epochs": 2, "adapter.kernel_size": 1}],
])
def test_ablate_never_reuses_across_head_settings(grid, points):
    table, out = grid["go"](points, seeds=1)
    calls = grid["head"].calls
    assert sorted(c["epochs"] for c in calls) == [1, 2] and all(c["original"] for c in calls)
    for row in table["rows"]:
        epochs = row["point"]["train.epochs"]
        head = row["columns"]["average_mAP"]
        assert row["reused"] == 1
        assert head["adapted"]["mean"] == head["original"]["mean"] == pytest.approx(0.1 * epochs)
    reused = [json.loads(path.read_text())["reused_from"] for path in out.glob("points/*/seed0/result.json")]
    assert len(reused) == 2 and len(set(reused)) == 2  # each from its own head settings' original row


# ---------------------------------------------------------------- transform -----------------------------------


def _identity_file(root):
    path = root / "identity.safetensors"
    save_adapter(SoLaAdapter(16, hidden_dim=8), path)  # alpha 0 at init: gate 0
    return ["--adapter", path]


def _run_that_kept_the_identity(root):
    """A run whose selection kept the identity: adapter.safetensors trained, best.safetensors the identity."""
    run_dir = root / "run"
    run_dir.mkdir()
    (run_dir / "adapter.safetensors").write_bytes((root / "trained.safetensors").read_bytes())
    save_adapter(SoLaAdapter(16, hidden_dim=8), run_dir / "best.safetensors", {"epoch": 0, "identity": True})
    return ["--adapter", run_dir]


IDENTITIES = {  # one line per way of asking for the identity
    "gate-0 file": _identity_file,
    "run whose selection kept the identity": _run_that_kept_the_identity,
    "one-tap smoothing": lambda root: ["--smooth", 1],
}


@pytest.fixture
def case_root(bench, tmp_path):
    root = tmp_path / "case"
    root.mkdir()
    (root / "trained.safetensors").write_bytes(bench["adapter"].read_bytes())
    return root


@pytest.mark.parametrize("make", IDENTITIES.values(), ids=IDENTITIES.keys())
def test_transform_with_an_identity_writes_nothing_and_says_so(bench, case_root, capsys, make):
    args = make(case_root)
    before = snapshot(bench["features"], case_root)
    out = case_root / "out"
    code, stdout, err = run(capsys, "transform", bench["features"], *args, "--out", out, "--quiet")
    assert code == 0 and stdout == ""
    (line,) = err.splitlines()
    assert line.startswith("sola transform: note:") and "identity" in line and "--write-identity" in line
    assert not out.exists() and not (case_root / "out.sola_transform.json").exists()
    assert snapshot(bench["features"], case_root) == before


@pytest.mark.parametrize("make", IDENTITIES.values(), ids=IDENTITIES.keys())
def test_transform_write_identity_writes_a_byte_identical_store(bench, case_root, capsys, make):
    out = case_root / "out"
    code, stdout, _ = run(capsys, "transform", bench["features"], *make(case_root), "--out", out, "--quiet",
                          "--write-identity")
    assert code == 0 and "transformed 6 videos" in stdout
    source, copy = open_store(bench["features"]), open_store(out)
    assert copy.video_ids() == source.video_ids() and (out / "sola_transform.json").is_file()
    for video_id in source.video_ids():
        original, written = source.read(video_id), copy.read(video_id)
        assert written.dtype == original.dtype and written.tobytes() == original.tobytes()
    names = sorted(p.name for p in bench["features"].iterdir())
    assert all((out / name).read_bytes() == (bench["features"] / name).read_bytes() for name in names)


def test_transform_of_a_trained_adapter_still_writes(bench, tmp_path, capsys):
    code, stdout, err = run(capsys, "transform", bench["features"], "--adapter", bench["adapter"],
                            "--out", tmp_path / "out", "--quiet")
    assert code == 0 and "transformed 6 videos" in stdout and "note" not in err


def test_transform_store_copies_an_identity_unless_asked_to_skip(tmp_path):
    store = open_store(write_npy_store(tmp_path / "f", [20, 30], dim=16))
    identity = SoLaAdapter(16, hidden_dim=8)
    trained = SoLaAdapter(16, hidden_dim=8)
    with torch.no_grad():
        trained.alpha.fill_(0.1)
    assert is_identity(identity) and not is_identity(trained)
    summary = transform_store(identity, store, tmp_path / "copy", progress=False)  # library default: the copy
    assert summary["written"] == 2 and summary["identity"] is True
    skipped = transform_store(identity, store, tmp_path / "none", progress=False, skip_identity=True)
    assert skipped["out"] is None and skipped["written"] == 0 and not (tmp_path / "none").exists()
    # a NaN policy that changes a video makes the output differ from the input: written even when skipping
    bad = tmp_path / "bad"
    write_npy_store(bad, [20, 30], dim=16)
    values = np.load(bad / "vid001.npy")
    values[3, 2] = np.nan
    np.save(bad / "vid001.npy", values)
    summary = transform_store(identity, open_store(bad), tmp_path / "zeroed", progress=False, nan_policy="zero",
                              skip_identity=True)
    assert summary["out"] is not None and summary["written"] == 2
