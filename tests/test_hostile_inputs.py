"""Hostile inputs through the CLI (issue 10): a bad store, annotation, prediction, config, flag,
permission or disk gives exit != 0 and one line on stderr naming the file or flag and the fix, no
traceback, and nothing written or modified (or, where the input is legal, the correct result).

Most cases call `sola.cli.main` in-process (fast); a few run `python -m sola` to see what a shell sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sola.adapt.adapter import SoLaAdapter, save_adapter
from sola.adapt.transform import apply_adapter, transform_store
from sola.cli import main
from sola.data.stores import open_store
from tests.hostile import bench, fails, one_line, run, snapshot  # noqa: F401 (bench is a fixture)


# -- size and count arguments: 0 or -5 never silently mean a default (bug 1) --------------------------

USAGE_ERRORS = [
    (["transform", "{features}", "--adapter", "{adapter}", "--out", "{out}", "--chunk-size", "-5"], "--chunk-size"),
    (["transform", "{features}", "--adapter", "{adapter}", "--out", "{out}", "--chunk-size", "0"], "--chunk-size"),
    (["eval-proposals", "{annotations}", "{annotations}", "--max-proposals", "-5"], "--max-proposals"),
    (["compare", "{features}", "--annotations", "{annotations}", "--config", "x.yaml", "--out", "{out}",
      "--sm-weight", "nan"], "--sm-weight"),
    (["compare", "{features}", "--annotations", "{annotations}", "--config", "x.yaml", "--out", "{out}",
      "--seeds", "0"], "--seeds"),
    (["train", "{features}", "--out", "{out}", "--epochs", "0"], "--epochs"),
    (["train", "{features}", "--out", "{out}", "--batch-size", "-1"], "--batch-size"),
    (["train", "{features}", "--out", "{out}", "--lr", "nan"], "--lr"),
    (["train", "{features}", "--out", "{out}", "--lr", "-0.1"], "--lr"),
    (["train", "{features}", "--out", "{out}", "--steps", "-3"], "--steps"),
    (["train", "{features}", "--out", "{out}", "--seed", "-1"], "--seed"),
    (["synth", "{out}", "--videos", "0"], "--videos"),
    (["synth", "{out}", "--dim", "-4"], "--dim"),
    (["tal", "infer", "{out}", "{features}", "--annotations", "{annotations}", "--batch-size", "0"], "--batch-size"),
    (["probe", "{features}", "--annotations", "{annotations}", "--boundary-k", "0"], "--boundary-k"),
    (["probe", "{features}", "--annotations", "{annotations}", "--fps", "inf"], "--fps"),
    (["select", "{out}", "--annotations", "{annotations}", "--holdout", "1.5"], "--holdout"),
    (["extract", "{out}", "--out", "{out}", "--window", "0"], "--window"),
    (["classify", "x.mp4", "--topk", "0"], "--topk"),
    (["demo", "--out", "{out}", "--num-videos", "0"], "--num-videos"),
    (["splice", "{features}", "{out}", "--seed", "-1"], "--seed"),
]


@pytest.mark.parametrize("args, flag", USAGE_ERRORS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in USAGE_ERRORS])
def test_bad_sizes_and_counts_are_refused_naming_the_flag(capsys, bench, tmp_path, args, flag):
    values = {**{k: str(v) for k, v in bench.items()}, "out": str(tmp_path / "out")}
    line = fails(capsys, *[a.format(**values) for a in args], says=(flag, "must be"))
    assert "--help" in line
    assert not (tmp_path / "out").exists()


def test_library_refuses_a_chunk_size_below_one(bench, tmp_path):
    from sola.adapt.adapter import load_adapter
    from sola.core.errors import ConfigError

    adapter = load_adapter(bench["adapter"])
    with pytest.raises(ConfigError, match="chunk size"):
        apply_adapter(adapter, np.zeros((10, 16), np.float32), chunk_size=0)
    with pytest.raises(ConfigError, match="chunk size"):
        transform_store(adapter, open_store(bench["features"]), tmp_path / "out", chunk_size=-5, progress=False)
    assert not (tmp_path / "out").exists()


# -- a diverged adapter is refused (bug 3) -------------------------------------------------------------


def test_transform_with_a_nan_adapter_writes_nothing(capsys, bench, tmp_path):
    from sola.adapt.adapter import adapter_metadata
    from sola.core.runs import write_safetensors

    adapter = SoLaAdapter(16, hidden_dim=8)
    tensors = {name: torch.full_like(t, float("nan")) for name, t in adapter.state_dict().items()}
    write_safetensors(tmp_path / "nan.safetensors", tensors, adapter_metadata(adapter))
    fails(capsys, "transform", bench["features"], "--adapter", tmp_path / "nan.safetensors", "--out", tmp_path / "out",
          "--quiet", says=("nan.safetensors", "NaN/Inf", "fit.lr"))
    assert not (tmp_path / "out").exists()


def test_yaml_lr_inf_is_refused_before_a_run_directory_exists(capsys, bench, tmp_path):
    config = tmp_path / "bad.yaml"
    for text in ("fit: {lr: .inf}", "fit: {weight_decay: .nan}", "matching: {target_k: .nan}"):
        config.write_text(text + "\n")
        fails(capsys, "train", bench["features"], "--config", config, "--out", tmp_path / "run", "--quiet",
              says=(text.split("{")[1].split(":")[0].strip(),))
        assert not (tmp_path / "run").exists()


# -- NaN/Inf anywhere in the features stops `sola train` before it starts (bug 4) ----------------------


def test_train_names_a_video_with_one_nan_before_any_epoch(capsys, tmp_path):
    from tests.conftest import write_npy_store

    features = write_npy_store(tmp_path / "features", [526, 300, 300], dim=8)
    bad = np.load(features / "vid000.npy")
    bad[5, 3] = np.nan  # one value, where few training windows would look
    np.save(features / "vid000.npy", bad)
    fails(capsys, "train", features, "--out", tmp_path / "run", "--epochs", "40", "--quiet",
          says=("'vid000'", "NaN", "--nan-policy"))
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "metrics.jsonl").exists()


# -- stale outputs are never reused (bug 2) ------------------------------------------------------------


def test_transform_into_an_output_of_another_adapter_is_refused(capsys, bench, tmp_path):
    out = tmp_path / "out"
    code, printed, _ = run(capsys, "transform", bench["features"], "--adapter", bench["adapter"], "--out", out, "--quiet")
    assert code == 0 and "transformed 6 videos" in printed
    before = snapshot(out)
    other = SoLaAdapter(16, hidden_dim=8)
    with torch.no_grad():
        other.alpha.fill_(-0.2)
    save_adapter(other, tmp_path / "other.safetensors")
    fails(capsys, "transform", bench["features"], "--adapter", tmp_path / "other.safetensors", "--out", out, "--quiet",
          says=(str(out), "another adapter", "new --out"))
    assert snapshot(out) == before


def test_transform_into_copies_of_the_inputs_is_refused(capsys, bench, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for file in bench["features"].iterdir():
        (out / file.name).symlink_to(file)
    fails(capsys, "transform", bench["features"], "--adapter", bench["adapter"], "--out", out, "--quiet",
          says=("already holds features", "sola_transform.json"))
    assert all(p.is_symlink() for p in out.iterdir())


def test_transform_names_the_file_of_another_dimension(capsys, bench, tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    for file in sorted(bench["features"].iterdir())[:2]:
        (features / file.name).write_bytes(file.read_bytes())
    np.save(features / "odd.npy", np.zeros((50, 12), np.float32))
    fails(capsys, "transform", features, "--adapter", bench["adapter"], "--out", tmp_path / "out", "--quiet",
          says=(str(features / "odd.npy"), "dim 12", "dim 16"))


# -- annotations -----------------------------------------------------------------------------------------


def edited_annotations(bench, tmp_path: Path, edit) -> Path:
    """A copy of the benchmark's annotations changed by `edit(database)`."""
    data = json.loads(bench["annotations"].read_text())
    edit(data["database"])
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    return path


def first_segment(database: dict) -> tuple[str, dict]:
    video_id = next(v for v in sorted(database) if database[v]["annotations"])
    return video_id, database[video_id]["annotations"][0]


@pytest.mark.parametrize("label", ["missing", None, "", "  "])
def test_tal_train_refuses_a_segment_without_label(capsys, bench, tmp_path, label):
    def unlabel(database):
        _, segment = first_segment(database)
        segment.pop("label") if label == "missing" else segment.update(label=label)  # None: JSON null

    annotations = edited_annotations(bench, tmp_path, unlabel)
    video_id, _ = first_segment(json.loads(annotations.read_text())["database"])
    fails(capsys, "tal", "train", bench["features"], "--annotations", annotations, "--config", "tal_synthetic_cpu",
          "--out", tmp_path / "run", "--quiet", says=(f"video {video_id!r} segment 0", "no label", "num_classes=1"))
    assert not (tmp_path / "run").exists()


# -- predictions ---------------------------------------------------------------------------------------


def predictions_file(bench, tmp_path: Path, name: str, extra: list[tuple[str, dict]] = ()) -> Path:
    """Perfect detections of the benchmark's validation videos (score 0.9) plus `extra` (video, prediction)."""
    database = json.loads(bench["annotations"].read_text())["database"]
    results = {video: [{"label": a["label"], "score": 0.9, "segment": a["segment"]} for a in entry["annotations"]]
               for video, entry in database.items() if entry["subset"] == "validation"}
    for video, prediction in extra:
        results.setdefault(video, []).append(prediction)
    path = tmp_path / name
    path.write_text(json.dumps({"version": "VERSION 1.3", "results": results}))
    return path


def average_map(out: str) -> float:
    return float(next(line for line in out.splitlines() if line.startswith("avg")).split()[1].rstrip("%"))


def test_a_prediction_that_ends_before_it_starts_is_a_false_positive(capsys, bench, tmp_path):
    database = json.loads(bench["annotations"].read_text())["database"]
    video = next(v for v, e in sorted(database.items()) if e["subset"] == "validation" and e["annotations"])
    label = database[video]["annotations"][0]["label"]
    flipped = predictions_file(bench, tmp_path, "flipped.json",
                               [(video, {"label": label, "score": 0.95, "segment": [0.0, -2e-05]})])
    far = predictions_file(bench, tmp_path, "far.json",
                           [(video, {"label": label, "score": 0.95, "segment": [1e6, 1e6 + 1]})])
    gt = ["eval-detection", bench["annotations"], "--subset", "validation", "--tiou", "0.5"]
    code, out, err = run(capsys, *gt, flipped)
    assert code == 0, err
    assert f"1 prediction(s) end before they start (e.g. video {video!r} [0, -2e-05])" in one_line(err)
    code, reference, _ = run(capsys, *gt, far)
    assert code == 0 and average_map(out) == average_map(reference) < 100.0

    from sola.data.annotations import load_annotations
    from sola.data.predictions import ground_truth_segments, read_predictions
    from sola.evaluate.metrics.reference import reference_average_precision

    truth = ground_truth_segments(load_annotations(bench["annotations"]), "validation")
    _, ap = reference_average_precision(truth, read_predictions(flipped), [0.5])  # the official loop
    assert average_map(out) == pytest.approx(round(100 * ap.mean(), 2))


def test_ground_truth_that_ends_before_it_starts_stays_an_error(capsys, bench, tmp_path):
    def flip(database):
        video = next(v for v, e in sorted(database.items()) if e["subset"] == "validation" and e["annotations"])
        segment = database[video]["annotations"][0]
        segment["segment"] = segment["segment"][::-1]

    annotations = edited_annotations(bench, tmp_path, flip)
    fails(capsys, "eval-detection", annotations, predictions_file(bench, tmp_path, "p.json"), "--subset", "validation",
          says=("annotations.json", "ends before it starts"))


def test_predictions_of_unknown_videos_are_counted(capsys, bench, tmp_path):
    extra = [("nowhere", {"label": "x", "score": 0.5, "segment": [1.0, 2.0]})] * 3
    predictions = predictions_file(bench, tmp_path, "p.json", extra)
    code, _, err = run(capsys, "eval-detection", bench["annotations"], predictions, "--subset", "validation")
    assert code == 0
    assert "3 prediction(s) of 1 video(s) without ground truth here (e.g. 'nowhere')" in err
    code, _, err = run(capsys, "eval-proposals", bench["annotations"], predictions, "--subset", "validation")
    assert code == 0 and "are left out" in one_line(err)


@pytest.mark.parametrize("command", ["eval-detection", "eval-proposals", "tal eval"])
def test_a_score_that_is_no_number_is_one_line(capsys, bench, tmp_path, command):
    extra = [("v", {"label": "x", "score": "high", "segment": [1.0, 2.0]})]
    predictions = predictions_file(bench, tmp_path, "p.json", extra)
    if command == "tal eval":
        args = ["tal", "eval", predictions, "--annotations", bench["annotations"], "--subset", "validation"]
    else:
        args = [command, bench["annotations"], predictions, "--subset", "validation"]
    line = fails(capsys, *args, says=("p.json", "'high' is not a number"))
    assert "np.str_" not in line


# -- outputs: links to nothing, files where directories go, the input store itself ---------------------


def small_config(tmp_path: Path) -> Path:
    config = tmp_path / "small.yaml"
    config.write_text("adapter: {hidden_dim: 8}\nmatching: {projector_dim: 8}\n"
                      "fit: {epochs: 1, batch_size: 4, checkpoint_every: 1, device: cpu}\n")
    return config


@pytest.mark.parametrize("command", ["synth", "train", "tal train", "transform", "eval-detection"])
def test_an_output_that_is_a_dangling_link_is_one_line(capsys, bench, tmp_path, command):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "missing" / "target")
    args = {
        "synth": ["synth", link, "--videos", "2", "--dim", "4"],
        "train": ["train", bench["features"], "--config", small_config(tmp_path), "--out", link, "--quiet"],
        "tal train": ["tal", "train", bench["features"], "--annotations", bench["annotations"], "--config",
                      "tal_synthetic_cpu", "--out", link, "--quiet"],
        "transform": ["transform", bench["features"], "--adapter", bench["adapter"], "--out", link, "--quiet"],
        "eval-detection": ["eval-detection", bench["annotations"], predictions_file(bench, tmp_path, "p.json"),
                           "--subset", "validation", "--json", link],
    }[command]
    if command == "eval-detection":  # a file output: the atomic rename replaces the link itself
        code, _, err = run(capsys, *args)
        assert code == 0 and json.loads(link.read_text())["tiou_thresholds"]
        return
    fails(capsys, *args, says=(str(link), "a link to", "does not exist", "remove the link"))
    assert link.is_symlink() and not (tmp_path / "missing").exists()


def test_synth_into_a_directory_of_another_benchmark_leaves_no_old_videos(capsys, tmp_path):
    out = tmp_path / "out"
    assert run(capsys, "synth", out, "--videos", "4", "--dim", "4")[0] == 0
    assert run(capsys, "synth", out, "--videos", "2", "--dim", "4")[0] == 0
    videos = json.loads((out / "annotations.json").read_text())["database"]
    assert sorted(p.stem for p in (out / "features").iterdir()) == sorted(videos) == ["synth_0000", "synth_0001"]
    np.save(out / "features" / "mine.npy", np.zeros((3, 4), np.float32))  # not written by synth: refused
    before = snapshot(out)
    fails(capsys, "synth", out, "--videos", "3", "--dim", "4", says=("mine.npy", "new directory"))
    assert snapshot(out) == before
    (tmp_path / "file").write_text("x")
    fails(capsys, "synth", tmp_path / "file", "--videos", "2", "--dim", "4", says=("file", "not a directory"))


def test_train_out_inside_the_input_store_is_refused(capsys, bench, tmp_path):
    before = snapshot(bench["features"])
    fails(capsys, "train", bench["features"], "--config", small_config(tmp_path), "--out", bench["features"] / "run",
          "--quiet", says=("inside the input store", "never modified"))
    assert snapshot(bench["features"]) == before and not (bench["features"] / "run").exists()


def test_resuming_on_another_store_is_refused(capsys, bench, tmp_path):
    run_dir = tmp_path / "run"
    code, _, err = run(capsys, "train", bench["features"], "--config", small_config(tmp_path), "--out", run_dir, "--quiet")
    assert code == 0, err
    other = tmp_path / "other"
    other.mkdir()
    for file in bench["features"].iterdir():
        (other / file.name).write_bytes(file.read_bytes())
    before = snapshot(run_dir)
    fails(capsys, "train", other, "--resume", run_dir, "--epochs", "2", "--quiet",
          says=(f"fitted on {bench['features'].resolve()}", "run.json"))
    assert snapshot(run_dir) == before


@pytest.fixture(scope="module")
def head(bench):
    """A TAL head trained one epoch on the benchmark (training subset)."""
    run_dir = bench["root"] / "head"
    code = main(["tal", "train", str(bench["features"]), "--annotations", str(bench["annotations"]), "--config",
                 "tal_synthetic_cpu", "--out", str(run_dir), "--quiet", "--set", "train.epochs=1",
                 "--set", "train.warmup_epochs=0", "--set", "data.train_subset=training",
                 "--set", "data.test_subset=validation"])
    assert code == 0
    return run_dir


def test_tal_infer_errors_are_one_line(capsys, bench, head, tmp_path):
    infer = ["tal", "infer", head, "--annotations", bench["annotations"], "--subset", "validation"]
    (tmp_path / "dir").mkdir()
    fails(capsys, *infer[:3], bench["features"], *infer[3:], "--out", tmp_path / "dir",
          says=(str(tmp_path / "dir"), "is a directory", "file path"))
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "missing" / "predictions.json")
    code, out, err = run(capsys, *infer[:3], bench["features"], *infer[3:], "--out", link)
    assert code == 0 and "written to" in out and not link.is_symlink()  # the atomic rename replaces the link
    wide = tmp_path / "wide"
    wide.mkdir()
    for file in bench["features"].iterdir():
        np.save(wide / file.name, np.zeros((np.load(file).shape[0], 32), np.float32))
    fails(capsys, *infer[:3], wide, *infer[3:], "--out", tmp_path / "p.json",
          says=(str(wide), "dim 32", "dim 16"))
    assert not (tmp_path / "p.json").exists()


# -- configs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pair, says", [
    ("train.lr=nan", ("--set: train.lr", "finite")),
    ("train.weight_decay=.inf", ("--set: train.weight_decay", "finite")),
    ("test.nms_sigma=nan", ("--set: test.nms_sigma", "finite")),
    ("train.batch_size=0", ("--set: train.batch_size", "positive")),
])
def test_tal_set_errors_blame_the_override(capsys, bench, tmp_path, pair, says):
    config = tmp_path / "tal.yaml"
    config.write_text("train: {epochs: 1}\n")
    fails(capsys, "tal", "train", bench["features"], "--annotations", bench["annotations"], "--config", config,
          "--out", tmp_path / "run", "--quiet", "--set", pair, says=says)
    assert not (tmp_path / "run").exists()


def test_tal_yaml_errors_still_name_the_file(capsys, bench, tmp_path):
    config = tmp_path / "tal.yaml"
    config.write_text("train: {lr: .nan}\n")
    fails(capsys, "tal", "train", bench["features"], "--annotations", bench["annotations"], "--config", config,
          "--out", tmp_path / "run", "--quiet", says=(str(config), "train.lr"))


def test_lr_1e30_stops_with_one_line(capsys, bench, tmp_path):
    # beyond fit.lr's range (at most 1000): refused before the run folder exists
    fails(capsys, "train", bench["features"], "--config", small_config(tmp_path), "--epochs", "3", "--lr", "1e30",
          "--out", tmp_path / "run", "--quiet", says=("fit.lr", "1000", "1e+30"))
    assert not (tmp_path / "run").exists()
    # the largest lr the range allows still diverges: the guardrail stops it
    fails(capsys, "train", bench["features"], "--config", small_config(tmp_path), "--epochs", "3", "--lr", "1000",
          "--out", tmp_path / "run", "--quiet", says=("fit.lr", "last healthy adapter"))


# -- stores: mixed HDF5, NaN in the probe, .pt pickles, messages that name real options ----------------


def test_hdf5_mixing_datasets_and_groups_is_reported_not_a_traceback(capsys, tmp_path):
    import h5py

    for name, group_first in (("datasets_first.h5", False), ("groups_first.h5", True)):
        with h5py.File(tmp_path / name, "w") as handle:
            handle.create_group("a" if group_first else "b")["feats"] = np.zeros((30, 4), np.float32)
            handle["b" if group_first else "a"] = np.zeros((30, 4), np.float32)
        code, out, err = run(capsys, "inspect", tmp_path / name, "--quiet")
        assert code == 1 and "Traceback" not in err
        problem = next(line for line in out.splitlines() if line.startswith("problem:"))
        assert name in problem and "the same way" in problem


def test_probe_names_a_video_with_nan_features(capsys, bench, tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    for file in bench["features"].iterdir():
        array = np.load(file)
        if file.name == sorted(p.name for p in bench["features"].iterdir())[1]:
            array[3, 2] = np.nan
            bad = file.name
        np.save(features / file.name, array)
    fails(capsys, "probe", features, "--annotations", bench["annotations"], "--device", "cpu", "--quiet",
          says=(str(features / bad), "NaN/Inf"))


def test_probe_says_when_no_annotated_video_has_features(capsys, bench, tmp_path):
    annotations = edited_annotations(bench, tmp_path, lambda db: db.update({f"x_{k}": db.pop(k) for k in list(db)}))
    line = fails(capsys, "probe", bench["features"], "--annotations", annotations, "--device", "cpu", "--quiet",
                 says=("0 of 6 feature ids match the 6 annotated ids (e.g. 'synth_0000' vs 'x_synth_0000')",))
    assert "[]" not in line


def test_a_negative_duration_is_not_called_outside_the_video(capsys, bench, tmp_path):
    annotations = edited_annotations(bench, tmp_path, lambda db: db[sorted(db)[0]].update(duration=-5))
    line = fails(capsys, "probe", bench["features"], "--annotations", annotations, "--device", "cpu", "--quiet",
                 says=("duration -5", "negative"))
    assert "outside" not in line


def test_pt_with_code_gets_our_refusal_not_torchs(capsys, tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "store").mkdir()
    torch.save({"feats": torch.zeros(3, 4), "extra": Exploit()}, tmp_path / "store" / "vid.pt")
    code, out, err = run(capsys, "inspect", tmp_path / "store", "--quiet")
    text = out + err
    assert code != 0 and "pwned" not in text and "vid.pt: refused" in text
    assert "weights_only" not in text and "\x1b[" not in text


def test_two_stream_messages_name_what_a_command_can_do(capsys, tmp_path):
    from tests.conftest import write_npy_store

    write_npy_store(tmp_path / "s" / "rgb", [30, 30], dim=4)
    write_npy_store(tmp_path / "s" / "flow", [30], dim=4)
    line = fails(capsys, "inspect", tmp_path / "s", "--quiet", says=("only in RGB", "remove them"))
    assert "Python: TwoStreamStore" in line  # the option exists only in the Python API, and says so


# -- the operating system says no: permissions, a full disk, a closed pipe -----------------------------


@pytest.mark.parametrize("number, says", [
    (13, ("permission denied", "chmod")),
    (28, ("no space left", "rerun")),
    (30, ("read-only file system",)),
    (2, ("does not exist",)),
    (21, ("is a directory",)),
])
def test_os_errors_are_one_line_naming_the_path(capsys, monkeypatch, tmp_path, number, says):
    import sola.cli.core

    def refuse(args):
        raise OSError(number, os.strerror(number), str(tmp_path / "where"))

    monkeypatch.setattr(sola.cli.core, "run_synth", refuse)
    fails(capsys, "synth", tmp_path / "out", says=(f"sola synth: error: {tmp_path / 'where'}: ", *says))


def test_a_full_disk_names_the_output_and_leaves_no_half_file(capsys, monkeypatch, bench, tmp_path):
    from sola.data.stores.npy import NpyWriter

    real_dump, calls = NpyWriter.dump, []

    def dump(self, handle, video_id, features):
        calls.append(video_id)
        if len(calls) == 3:  # the disk fills up inside the third video
            handle.write(b"\x93NUMPY half a file")
            raise OSError(28, "No space left on device")
        real_dump(self, handle, video_id, features)

    monkeypatch.setattr(NpyWriter, "dump", dump)
    out = tmp_path / "out"
    args = ["transform", bench["features"], "--adapter", bench["adapter"], "--out", out, "--quiet"]
    third = sorted(p.name for p in bench["features"].iterdir())[2]
    fails(capsys, *args, says=(str(out / third), "no space left", "rerun"))
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".npy") == sorted(
        p.name for p in bench["features"].iterdir())[:2]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary left behind
    monkeypatch.setattr(NpyWriter, "dump", real_dump)  # space freed: the rerun finishes the store
    code, printed, _ = run(capsys, *args)
    assert code == 0 and "transformed 4 videos (2 already done)" in printed


def permissions_hold(tmp_path: Path) -> bool:
    """False for root with CAP_DAC_OVERRIDE, who reads and writes whatever the permissions say."""
    probe = tmp_path / "probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        probe.read_text()
    except PermissionError:
        return True
    finally:
        probe.chmod(0o644)
    return False


def test_permissions_are_one_line(capsys, bench, tmp_path):
    if not permissions_hold(tmp_path):
        pytest.skip("permissions are not enforced for this user (root); "
                    "run under `setpriv --bounding-set -dac_override,-dac_read_search` to check")
    features = tmp_path / "features"
    features.mkdir()
    annotations = tmp_path / "annotations.json"
    annotations.write_text(bench["annotations"].read_text())
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    try:
        features.chmod(0)
        fails(capsys, "inspect", features, "--quiet", says=(str(features), "permission denied"))
        annotations.chmod(0)
        fails(capsys, "inspect", bench["features"], "--annotations", annotations, "--quiet",
              says=(str(annotations), "permission denied"))
        readonly.chmod(0o555)
        fails(capsys, "transform", bench["features"], "--adapter", bench["adapter"], "--out", readonly / "out",
              "--quiet", says=(str(readonly / "out"), "permission denied"))
    finally:
        for path in (features, annotations, readonly):
            path.chmod(0o755)


def test_a_closed_pipe_ends_quietly(bench):
    # `sola inspect | head -1`: the reader is gone before sola prints
    process = subprocess.Popen([sys.executable, "-m", "sola", "inspect", str(bench["features"]), "--quiet"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and err == ""


# -- a few cases as a shell sees them ------------------------------------------------------------------


@pytest.mark.parametrize("case", ["chunk-size", "score", "tsm-out"])
def test_what_a_shell_sees(bench, tmp_path, case):
    predictions = tmp_path / "p.json"
    predictions.write_text(json.dumps({"results": {"v": [{"label": "a", "score": "high", "segment": [0, 1]}]}}))
    (tmp_path / "dir").mkdir()
    args, says = {
        "chunk-size": (["transform", bench["features"], "--adapter", bench["adapter"], "--out", tmp_path / "out",
                        "--chunk-size", "-5"], "--chunk-size"),
        "score": (["eval-detection", bench["annotations"], predictions, "--subset", "validation"], "'high'"),
        "tsm-out": (["tsm", bench["features"], "--video", sorted(p.stem for p in bench["features"].iterdir())[0],
                     "--out", tmp_path / "dir"], "is a directory"),
    }[case]
    result = subprocess.run([sys.executable, "-m", "sola", *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and says in one_line(result.stderr) and result.stdout == ""
    assert not (tmp_path / "out").exists() and list((tmp_path / "dir").iterdir()) == []
