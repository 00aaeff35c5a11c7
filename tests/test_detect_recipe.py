"""The recipe of docs/features.md ("Detections on your own videos") as written, on the shared real clips:

    sola extract my_videos/ --out feats
    sola tal train feats --annotations my_ann.json --config sola_extract_i3d --out head
    sola detect new_videos/ --head head --out detect_out
    sola show detect_out/detections.json --annotations my_ann.json

and what keeps it honest: `sola detect` reuses the features `sola extract` wrote on the head's grid (copied into
OUT/features, the given store never written) and refuses a store made on another grid; `sola tal train` says when
the features' width replaces the config's data.input_dim, and names the file's subsets and the `--set` fix when the
config's training subset has no videos with features.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_path, write_npy_store
from tests.hostile import fails, run, snapshot

# Two clips `sola extract` sees, one only `sola detect` sees (../shared/README.md has their ground truth).
KNOWN = {"tennis26": (11.3, [("TennisSwing", 2.0, 4.0), ("TennisSwing", 4.8, 7.0), ("TennisSwing", 7.5, 10.0)]),
         "v_ZNVhz7ctTq0": (14.0, [("Walking the dog", 0.33, 14.05)])}
NEW = {"v_GGSY1Qvo990": (18.1, [("Clean and jerk", 5.82, 16.20)])}
# The recipe's head, made tiny: what the test checks is that the recipe runs, not how well the head learns.
TINY = ["--set", "train.epochs=1", "--set", "train.warmup_epochs=0", "--set", "model.embd_dim=16",
        "--set", "model.head_dim=16", "--set", "model.n_head=2", "--set", "model.stem_layers=1",
        "--set", "model.branch_layers=2", "--set", "model.regression_range=[[0,4],[4,8],[8,10000]]",
        "--set", "data.max_seq_len=64", "--set", "data.crop_ratio=null", "--quiet"]


def annotation_file(path: Path, videos: dict, subset: str = "training") -> Path:
    """An ActivityNet-style file: the subset most annotation files name, no fps (the extraction grid is used)."""
    database = {video: {"subset": subset, "duration": duration,
                        "annotations": [{"label": label, "segment": [start, end]} for label, start, end in segments]}
                for video, (duration, segments) in videos.items()}
    path.write_text(json.dumps({"version": "test", "database": database}))
    return path


def video_dir(path: Path, names) -> Path:
    path.mkdir()
    for name in names:
        (path / f"{name}.mp4").symlink_to(shared_path("videos", f"{name}.mp4"))
    return path


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """The recipe's first two steps: `sola extract` of two clips, a head trained on them with sola_extract_i3d."""
    from sola.cli import main

    root = tmp_path_factory.mktemp("recipe")
    my_videos = video_dir(root / "my_videos", KNOWN)
    new_videos = video_dir(root / "new_videos", [*KNOWN, *NEW])
    ann = annotation_file(root / "my_ann.json", {**KNOWN, **NEW})
    assert main(["extract", str(my_videos), "--out", str(root / "feats"), "--quiet"]) == 0
    return {"root": root, "feats": root / "feats", "new_videos": new_videos, "ann": ann}


@pytest.fixture(scope="module")
def head(recipe):
    from sola.cli import main

    assert main(["tal", "train", str(recipe["feats"]), "--annotations", str(recipe["ann"]), "--config",
                 "sola_extract_i3d", "--out", str(recipe["root"] / "head"), *TINY]) == 0
    return recipe["root"] / "head"


class NoEncoder:
    """Stands in for the I3D where every video's features exist: encoding anything is a bug."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("sola detect loaded the I3D to extract features that were already extracted")


@pytest.mark.slow
def test_the_documented_recipe_runs_and_detect_extracts_only_the_new_video(recipe, head, capsys):
    from sola.tal.features import read_features

    record = read_features(head)
    assert record["dim"] == 1024 and (record["window"], record["stride"]) == (16, 16)
    before = snapshot(recipe["feats"])
    out = recipe["root"] / "detect_out"
    capsys.readouterr()
    code, stdout, err = run(capsys, "detect", str(recipe["new_videos"]), "--head", str(head), "--out", str(out),
                            "--quiet")
    assert code == 0, err
    # the two clips `sola extract` wrote are copied from the head's training store; only the new one is encoded
    assert "reused the features of 2 videos from" in err and "(extracted 1)" in err
    for name in KNOWN:
        assert np.array_equal(np.load(out / "features" / f"{name}.npy"), np.load(recipe["feats"] / f"{name}.npy"))
    metadata = json.loads((out / "features" / "extract_metadata.json").read_text())
    assert sorted(metadata["videos"]) == sorted([*KNOWN, *NEW])
    assert snapshot(recipe["feats"]) == before  # an input: never written
    results = json.loads((out / "detections.json").read_text())["results"]
    assert sorted(results) == sorted([*KNOWN, *NEW])
    code, stdout, err = run(capsys, "show", str(out / "detections.json"), "--annotations", str(recipe["ann"]))
    assert code == 0, err
    assert (out / "show" / "show.json").is_file()


@pytest.mark.slow
def test_recipe_config_fits_sola_extract_features_without_a_note(recipe, tmp_path, capsys):
    code, _, err = run(capsys, "tal", "train", str(recipe["feats"]), "--annotations", str(recipe["ann"]), "--config",
                       "sola_extract_i3d", "--out", str(tmp_path / "head"), *TINY)
    assert code == 0, err
    assert "input_dim" not in err and "2 training videos" in err and "input dim 1024" in err


@pytest.mark.slow
def test_detect_reuses_a_given_store_without_encoding(recipe, head, tmp_path, capsys, monkeypatch):
    import sola.extract.extract as extract_module

    monkeypatch.setattr(extract_module, "SnippetEncoder", NoEncoder)
    videos = video_dir(tmp_path / "videos", KNOWN)
    before = snapshot(recipe["feats"])
    code, _, err = run(capsys, "detect", str(videos), "--head", str(head), "--out", str(tmp_path / "out"),
                       "--features", str(recipe["feats"]), "--quiet")
    assert code == 0, err
    assert "reused the features of 2 videos" in err and "(extracted 0)" in err
    assert snapshot(recipe["feats"]) == before
    assert sorted(json.loads((tmp_path / "out" / "detections.json").read_text())["results"]) == sorted(KNOWN)
    # a rerun resumes its own OUT/features (nothing reused, nothing extracted)
    code, _, err = run(capsys, "detect", str(videos), "--head", str(head), "--out", str(tmp_path / "out"), "--quiet")
    assert code == 0 and "reused" not in err, err


def _other_grid(store: Path, tmp: Path) -> Path:
    copy = tmp / "other_grid"
    shutil.copytree(store, copy)
    metadata = json.loads((copy / "extract_metadata.json").read_text())
    metadata["settings"].update(window=32, stride=8)
    (copy / "extract_metadata.json").write_text(json.dumps(metadata))
    return copy


def _no_metadata(store: Path, tmp: Path) -> Path:
    copy = tmp / "elsewhere"
    shutil.copytree(store, copy)
    (copy / "extract_metadata.json").unlink()
    return copy


def _logits(store: Path, tmp: Path) -> Path:
    copy = _other_grid(store, tmp)
    metadata = json.loads((copy / "extract_metadata.json").read_text())
    metadata["settings"].update(window=16, stride=16, output="logits", dim=400)
    (copy / "extract_metadata.json").write_text(json.dumps(metadata))
    return copy


# One row per kind of store `sola detect --features` must refuse: (how to make it, what the one line says)
REFUSED = [
    (_other_grid, ("another grid", "window 32, not 16", "stride 8, not 16", "--features")),
    (_no_metadata, ("no extract_metadata.json", "not a `sola extract` output")),
    (_logits, ("another grid", "output logits, not features", "dim 400, not 1024")),
    (lambda store, tmp: tmp / "missing", ("no such feature directory",)),
]


@pytest.mark.slow
@pytest.mark.parametrize("make, says", REFUSED, ids=lambda v: getattr(v, "__name__", None))
def test_detect_refuses_a_store_of_another_grid(recipe, head, tmp_path, capsys, make, says):
    store = make(recipe["feats"], tmp_path)
    before = snapshot(store)
    fails(capsys, "detect", str(recipe["new_videos"]), "--head", str(head), "--out", str(tmp_path / "out"),
          "--features", str(store), says=says)
    assert not (tmp_path / "out").exists()  # refused before any video was decoded or anything written
    assert snapshot(store) == before


@pytest.mark.slow
def test_a_stored_video_of_another_file_is_not_reused(recipe, tmp_path):
    from sola.extract.extract import ExtractSummary, _copy_reused, _MetadataFile, load_metadata
    from sola.data.stores.npy import NpyWriter

    other = tmp_path / "tennis26.mp4"  # the same name, another file: not the video the store's features are of
    other.symlink_to(shared_path("videos", "highjump.mp4"))
    todo = {"tennis26": other, "v_ZNVhz7ctTq0": shared_path("videos", "v_ZNVhz7ctTq0.mp4")}
    summary = ExtractSummary(tmp_path / "out", tmp_path / "out" / "extract_metadata.json")
    metadata = load_metadata(recipe["feats"])
    _copy_reused(todo, recipe["feats"], metadata, NpyWriter(tmp_path / "out"),
                 _MetadataFile(summary.metadata, {"settings": metadata["settings"], "videos": {}}), summary)
    assert summary.reused == ["v_ZNVhz7ctTq0"] and list(todo) == ["tennis26"]  # left to be extracted
    assert "another video named 'tennis26'" in summary.warnings[0]


# --- sola tal train: what the config says against what the data holds ---------------------------------------------


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return write_npy_store(root / "features", [40, 48, 56], dim=16)


def _tiny_annotations(path: Path, subset: str) -> Path:
    database = {f"vid{i:03d}": {"subset": subset, "duration": 20.0, "fps": 4.0,
                                "annotations": [{"label": "jump", "segment": [2.0, 6.0]}]} for i in range(3)}
    path.write_text(json.dumps({"version": "test", "database": database}))
    return path


def test_train_notes_when_the_features_width_replaces_the_configs(tiny_store, tmp_path, capsys):
    ann = _tiny_annotations(tmp_path / "ann.json", "training")
    code, _, err = run(capsys, "tal", "train", str(tiny_store), "--annotations", str(ann), "--config",
                       "sola_extract_i3d", "--out", str(tmp_path / "head"), *TINY)
    assert code == 0, err
    notes = [line for line in err.splitlines() if "note:" in line]
    assert len(notes) == 1, err
    assert "16-d" in notes[0] and "not the config's 1024" in notes[0] and "--set data.input_dim=16" in notes[0]
    # the same width as the config: no note
    code, _, err = run(capsys, "tal", "train", str(tiny_store), "--annotations", str(ann), "--config",
                       "sola_extract_i3d", "--out", str(tmp_path / "head16"), "--set", "data.input_dim=16", *TINY)
    assert code == 0 and "input_dim" not in err, err


# One row per config whose training subset the file lacks: (config and flags, the file's subset, what the line says)
EMPTY_SUBSET = [
    (["--config", "thumos14_i3d"], "training",
     ("subset 'validation' (data.train_subset)", "'training' (3 videos)", "--set data.train_subset=training")),
    (["--config", "sola_extract_i3d"], "Validation",
     ("subset 'training' (data.train_subset)", "'Validation' (3 videos)", "--set data.train_subset=Validation")),
    (["--config", "sola_extract_i3d", "--set", "data.train_subset=test"], "training",
     ("subset 'test'", "--set data.train_subset=training")),
]


@pytest.mark.parametrize("flags, subset, says", EMPTY_SUBSET)
def test_train_on_a_subset_without_videos_is_one_line_naming_the_fix(tiny_store, tmp_path, capsys, flags, subset,
                                                                      says):
    ann = _tiny_annotations(tmp_path / "ann.json", subset)
    line = fails(capsys, "tal", "train", str(tiny_store), "--annotations", str(ann), *flags,
                 "--out", str(tmp_path / "head"), *TINY, says=says)
    assert "note:" not in line  # the refusal is the only line: no note before it


def test_infer_on_a_subset_without_videos_names_its_flag(tiny_store, tmp_path, capsys):
    ann = _tiny_annotations(tmp_path / "ann.json", "training")
    assert run(capsys, "tal", "train", str(tiny_store), "--annotations", str(ann), "--config", "sola_extract_i3d",
               "--out", str(tmp_path / "head"), "--set", "data.input_dim=16", *TINY)[0] == 0
    fails(capsys, "tal", "infer", str(tmp_path / "head"), str(tiny_store), "--annotations", str(ann),
          says=("subset 'validation' (--subset)", "--subset training"))


def test_shipped_recipe_config_is_valid_and_fits_sola_extract():
    from sola.extract.config import OUTPUTS, ExtractionConfig
    from sola.tal.config import load_tal_config

    config = load_tal_config("sola_extract_i3d")
    assert config.data.input_dim == OUTPUTS["features"]
    assert (config.data.feat_stride, config.data.num_frames) == (ExtractionConfig.stride, ExtractionConfig.window)
    assert config.data.train_subset == "training"
