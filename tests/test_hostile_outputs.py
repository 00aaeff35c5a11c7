"""Output = input: every command that writes refuses an output that is, or lies inside, one of its inputs.

One guard (`sola.core.paths.check_outputs`) for every command. A new case is one line in `CASES`:
(command, output flag, the arguments as a function of the fixture paths, words the one-line refusal must
hold). `test_every_output_flag_of_every_command_has_a_case` walks every subparser and fails when a
command gains an output flag without a line here, so a new command cannot forget the guard.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest

from sola.core.errors import ConfigError
from sola.core.paths import check_outputs, run_files
from tests.hostile import bench, fails, one_line, run, snapshot  # noqa: F401


@pytest.fixture(scope="module")
def paths(bench):
    """The bench plus the other inputs a command may take: predictions, runs, videos, a config."""
    root = bench["root"]
    features, annotations = bench["features"], bench["annotations"]
    videos = json.loads(annotations.read_text())["database"]
    results = {v: [{"label": s["label"], "score": 0.9, "segment": s["segment"]} for s in entry["annotations"]]
               for v, entry in videos.items() if entry["subset"] == "validation"}
    predictions = root / "pred.json"
    predictions.write_text(json.dumps({"results": results}))
    tal_run = root / "tal_run"  # a TAL run as `sola tal train` leaves it (the guard reads none of it)
    tal_run.mkdir()
    for name in ("config.yaml", "weights.safetensors", "classes.json", "features.json"):
        (tal_run / name).write_text("x")
    (tal_run / "predictions.json").write_text(predictions.read_text())
    sola_run = root / "sola_run"  # a `sola train` run, fitted on the bench's store
    (sola_run / "checkpoints").mkdir(parents=True)
    (sola_run / "checkpoints" / "epoch_0001.safetensors").write_bytes(bench["adapter"].read_bytes())
    (sola_run / "config.yaml").write_text("adapter: {hidden_dim: 8}\n")
    (sola_run / "run.json").write_text(json.dumps({"features": str(features), "layout": "npy", "options": {}}))
    (sola_run / "select.json").write_text(annotations.read_text())  # a user's annotations, in a run folder
    shown = root / "shown"  # predictions named as `sola show` names its numbers
    shown.mkdir()
    (shown / "show.json").write_text(predictions.read_text())
    compare_dir = root / "compare_out"
    compare_dir.mkdir()
    (compare_dir / "compare.json").write_text(json.dumps({"annotations": str(annotations)}))
    (compare_dir / "compare.md").write_text("| mode |\n")
    video_dir = root / "videos"
    video_dir.mkdir()
    (video_dir / "clip.mp4").write_bytes(b"not really a video")
    config = root / "small.yaml"
    config.write_text("adapter: {hidden_dim: 8}\n")
    gt = root / "gt.json"  # the ground truth under another name, and links to it
    gt.write_text(annotations.read_text())
    (root / "gt_link.json").symlink_to(gt)
    os.link(gt, root / "gt_hard.json")
    return {**bench, "F": features, "A": annotations, "P": predictions, "GT": gt, "TAL": tal_run, "RUN": sola_run,
            "CMP": compare_dir, "V": video_dir, "C": config, "S": shown}


def _video(p):
    return p["F"] / sorted(os.listdir(p["F"]))[0]


TAL = ["--config", "tal_synthetic_cpu"]
# (command, output flag, arguments, words the refusal holds: the flag, and what it would overwrite)
CASES = [
    ("eval-detection", "--json", lambda p: ["eval-detection", p["GT"], p["P"], "--json", p["GT"]], ("--json", "is the ground truth GT")),
    ("eval-detection", "--json", lambda p: ["eval-detection", p["GT"], p["P"], "--json", p["P"]], ("--json", "is the predictions PRED")),
    ("eval-detection", "--json", lambda p: ["eval-detection", p["GT"], p["P"], "--json", p["root"] / "gt_link.json"], ("is the ground truth GT",)),
    ("eval-detection", "--json", lambda p: ["eval-detection", p["GT"], p["P"], "--json", p["root"] / "gt_hard.json"], ("is the ground truth GT",)),
    ("eval-proposals", "--json", lambda p: ["eval-proposals", p["GT"], p["P"], "--json", p["GT"]], ("--json", "is the ground truth GT")),
    ("eval-proposals", "--json", lambda p: ["eval-proposals", p["GT"], p["P"], "--json", p["P"]], ("is the proposals",)),
    ("tal eval", "--json", lambda p: ["tal", "eval", p["P"], "--annotations", p["A"], "--json", p["P"]], ("--json", "is the predictions")),
    ("tal eval", "--json", lambda p: ["tal", "eval", p["TAL"], "--annotations", p["A"], "--json", p["TAL"] / "predictions.json"], ("is the predictions",)),
    ("tal eval", "--json", lambda p: ["tal", "eval", p["TAL"], "--annotations", p["A"], "--json", p["TAL"] / "config.yaml"], ("is the run file",)),
    ("probe", "--json", lambda p: ["probe", p["F"], "--annotations", p["A"], "--json", p["A"]], ("--json", "is the input --annotations")),
    ("probe", "--json", lambda p: ["probe", p["F"], "--annotations", p["A"], "--json", _video(p)], ("lies inside the input store",)),
    ("probe", "--json", lambda p: ["probe", p["F"], "--annotations", p["A"], "--adapter", p["adapter"], "--json", p["adapter"]], ("is the input --adapter",)),
    ("tal infer", "--out", lambda p: ["tal", "infer", p["TAL"], p["F"], "--annotations", p["A"], "--out", p["A"]], ("--out", "is the input --annotations")),
    ("tal infer", "--out", lambda p: ["tal", "infer", p["TAL"], p["F"], "--annotations", p["A"], "--out", _video(p)], ("--out", "lies inside the input store")),
    ("tal infer", "--out", lambda p: ["tal", "infer", p["TAL"], p["F"], "--annotations", p["A"], "--out", p["TAL"] / "weights.safetensors"], ("is the run file",)),
    ("tsm", "--out", lambda p: ["tsm", p["F"], "--video", "synth_0000", "--out", _video(p)], ("--out", "inside the input store")),
    ("tsm", "--out", lambda p: ["tsm", p["F"], "--video", "synth_0000", "--adapter", p["adapter"], "--out", p["adapter"]], ("is the input --adapter",)),
    ("transform", "--out", lambda p: ["transform", p["F"], "--adapter", p["adapter"], "--out", p["F"]], ("--out", "is the input store")),
    ("transform", "--out", lambda p: ["transform", p["F"], "--adapter", p["adapter"], "--out", p["F"] / "sola"], ("lies inside the input store",)),
    ("transform", "--out", lambda p: ["transform", p["F"], "--adapter", p["RUN"], "--out", p["RUN"] / "sola"], ("lies inside the input --adapter",)),
    ("train", "--out", lambda p: ["train", p["F"], "--config", p["C"], "--out", p["F"] / "run"], ("inside the input store", "never modified")),
    ("train", "--out", lambda p: ["train", p["F"], "--config", p["C"], "--out", p["C"]], ("is the input --config",)),
    ("tal train", "--out", lambda p: ["tal", "train", p["F"], "--annotations", p["A"], *TAL, "--out", p["F"]], ("is the input store",)),
    ("tal train", "--out", lambda p: ["tal", "train", p["F"], "--annotations", p["A"], *TAL, "--out", p["A"]], ("is the input --annotations",)),
    ("synth", "OUT", lambda p: ["synth", p["A"].parent, "--config", p["A"]], ("annotations.json", "is the input --config")),
    ("splice", "OUT", lambda p: ["splice", p["F"], p["F"] / "spliced"], ("OUT", "inside the clip store")),
    ("splice", "OUT", lambda p: ["splice", p["F"], p["F"].parent], ("OUT", "holds the clip store")),
    ("extract", "--out", lambda p: ["extract", p["V"], "--out", p["V"] / "clip.mp4"], ("--out", "is a file of the input VIDEO_OR_DIR")),
    ("extract", "--out", lambda p: ["extract", p["V"], "--out", p["V"]], ("--out", "is the input VIDEO_OR_DIR")),
    ("extract", "--out", lambda p: ["extract", p["V"] / "clip.mp4", "--out", p["V"] / "clip.mp4"], ("is the input VIDEO_OR_DIR",)),
    ("extract", "--cache", lambda p: ["extract", p["V"], "--out", p["root"] / "x", "--cache", p["V"]], ("--cache", "is the input VIDEO_OR_DIR")),
    ("classify", "--cache", lambda p: ["classify", p["V"] / "clip.mp4", "--cache", p["V"] / "clip.mp4"], ("--cache", "is the input VIDEO")),
    ("detect", "--out", lambda p: ["detect", p["V"], "--head", p["TAL"], "--out", p["V"]], ("--out", "is the input VIDEO_OR_DIR")),
    ("detect", "--out", lambda p: ["detect", p["V"], "--head", p["TAL"], "--out", p["TAL"] / "detect"], ("inside the head run",)),
    ("detect", "--cache", lambda p: ["detect", p["V"], "--head", p["TAL"], "--out", p["root"] / "x", "--cache", p["TAL"]], ("--cache", "is the head run")),
    ("compare", "--out", lambda p: ["compare", p["F"], "--annotations", p["A"], "--out", p["A"]], ("--out", "is the input --annotations")),
    ("compare", "--out", lambda p: ["compare", p["F"], "--annotations", p["A"], "--adapter", p["RUN"], "--out", p["RUN"]], ("is the input --adapter",)),
    ("ablate", "--out", lambda p: ["ablate", p["F"], "--annotations", p["A"], "--out", p["A"].parent], ("--out", "holds the input store")),
    ("ablate", "--out", lambda p: ["ablate", p["F"], "--annotations", p["A"], "--out", p["F"] / "grid"], ("inside the input store",)),
    ("demo", "--out", lambda p: ["demo", "--videos", p["V"], "--out", p["root"]], ("--out", "holds the input --videos")),
    ("demo", "--out", lambda p: ["demo", "--videos", p["V"], "--out", p["V"] / "clip.mp4"], ("is a file of the input --videos",)),
    ("report", "--out", lambda p: ["report", p["CMP"], "--out", p["CMP"] / "compare.html"], ("compare.md", "is the run file")),
    ("report", "--out", lambda p: ["report", p["RUN"], "--out", p["F"] / "report.html"], ("inside the store the run was fitted on",)),
    ("show", "--out", lambda p: ["show", p["P"], "--annotations", p["A"], "--out", p["A"]], ("--out", "is the input --annotations")),
    ("show", "--out", lambda p: ["show", p["S"] / "show.json", "--annotations", p["A"], "--out", p["S"]], ("show.json", "is the predictions")),
    ("select", "RUN_DIR", lambda p: ["select", p["RUN"], "--features", p["F"], "--annotations", p["RUN"] / "select.json"], ("select.json", "is the input --annotations")),
]
# Output flags with no input file to protect (the table above needs no line for them).
NO_INPUT = {("cost", "--json"): "cost measures the adapter on random tensors: it reads no file"}


@pytest.mark.parametrize("command, flag, make, says", CASES, ids=[f"{c[0]} {c[1]} #{i}" for i, c in enumerate(CASES)])
def test_an_output_that_is_an_input_is_refused_before_any_work(capsys, paths, command, flag, make, says):
    args = make(paths)
    before = snapshot(paths["root"])
    line = fails(capsys, *args, says=says)
    assert "choose" in line and not any(w in line for w in ("remove it", "delete it", "or delete")), line
    assert snapshot(paths["root"]) == before  # nothing written, nothing modified, nothing new


def _output_flags() -> set[tuple[str, str]]:
    """(command, flag) of every option that names a file or folder the command writes, in every subparser."""
    from sola.cli import build_parser

    found = set()

    def walk(parser: argparse.ArgumentParser, prefix: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prefix} {name}".strip())
            elif action.option_strings and action.nargs != 0:
                for flag in action.option_strings:
                    if flag in ("--out", "--json", "--csv", "--png", "--md", "--html", "--cache", "--output-dir"):
                        found.add((prefix, flag))
            elif not action.option_strings and action.dest in ("out", "run_dir") and prefix != "tal infer":
                found.add((prefix, action.metavar or action.dest.upper()))

    walk(build_parser(), "")
    return found


def test_every_output_flag_of_every_command_has_a_case():
    flags = _output_flags()
    assert ("eval-detection", "--json") in flags and ("synth", "OUT") in flags and ("tal infer", "--out") in flags
    covered = {(command, flag) for command, flag, _, _ in CASES} | set(NO_INPUT)
    missing = sorted(flags - covered)
    assert not missing, f"output flags without an output = input case in CASES: {missing}"


# -- what stays allowed: a command's own run folder, new files beside the inputs ----------------------


def test_writes_into_a_commands_own_run_folder_stay_allowed(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in ("config.yaml", "weights.safetensors", "predictions.json"):
        (run_dir / name).write_text("x")
    # tal infer: RUN_DIR/predictions.json (its default output) is rewritten; the run's other files are inputs
    check_outputs({"--out": run_dir / "predictions.json"}, run_files(run_dir, keep=["predictions.json"]))
    check_outputs({"--json": run_dir / "evaluation_mine.json"}, run_files(run_dir))  # a new file beside them
    with pytest.raises(ConfigError, match="is the run file"):
        check_outputs({"--out": run_dir / "weights.safetensors"}, run_files(run_dir, keep=["predictions.json"]))


def test_links_missing_inputs_and_whole_directories(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "alias").symlink_to(store)
    with pytest.raises(ConfigError, match=r"--out .*alias/new lies inside the store \(.*store\)"):
        check_outputs({"--out": tmp_path / "alias" / "new"}, {"the store": store})
    check_outputs({"--out": tmp_path / "x.json"}, {"--config": "thumos14_i3d", "--metadata": None})  # not files
    check_outputs({"--out": tmp_path}, {"the store": store})  # an output folder may hold inputs ...
    with pytest.raises(ConfigError, match="holds the store"):  # ... unless the command cleans in it
        check_outputs({"--out": tmp_path}, {"the store": store}, whole=["--out"])
    with pytest.raises(ConfigError, match=r"--out .* \(it writes .*store\) is the store"):
        check_outputs({"--out": [tmp_path, store]}, {"the store": store})


def test_a_folder_of_videos_may_hold_new_outputs_but_not_lose_a_video(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"x")
    check_outputs({"--out": videos / "features"}, {"the videos": videos}, shallow=["the videos"])  # read one level deep
    with pytest.raises(ConfigError, match="is a file of the videos"):
        check_outputs({"--out": videos / "a.mp4"}, {"the videos": videos}, shallow=["the videos"])
    with pytest.raises(ConfigError, match="is the videos"):
        check_outputs({"--out": videos}, {"the videos": videos}, shallow=["the videos"])
    with pytest.raises(ConfigError, match="lies inside the store"):  # any other input folder: nothing inside it
        check_outputs({"--out": videos / "features"}, {"the store": videos})


def test_new_outputs_beside_the_inputs_are_written(capsys, paths, tmp_path):
    code, out, err = run(capsys, "eval-detection", paths["GT"], paths["P"], "--subset", "validation",
                         "--json", tmp_path / "map.json")
    assert code == 0, err
    assert json.loads((tmp_path / "map.json").read_text())["tiou_thresholds"]


# -- compare: a run folder given as --adapter is an input, never written into -------------------------


def test_compare_selects_into_its_own_folder_and_leaves_the_adapter_run_byte_identical(tmp_path, monkeypatch, capsys):
    import sola.experiments.compare
    from tests.test_compare import fake_experiment, scrambled_run
    from tests.test_probe import DIM, make_toy

    monkeypatch.setattr(sola.experiments.compare, "run_experiment", fake_experiment([]))
    make_toy(tmp_path, flip=0)
    run_dir = scrambled_run(tmp_path, DIM)
    before = snapshot(run_dir)
    out = tmp_path / "cmp"
    code, printed, err = run(capsys, "compare", tmp_path / "features", "--annotations", tmp_path / "annotations.json",
                             *TAL, "--adapter", run_dir, "--seeds", "1", "--no-probe", "--quiet", "--out", out)
    assert code == 0, err
    assert snapshot(run_dir) == before  # no best.safetensors, select.json or select_head/ in the user's run
    assert sorted(p.name for p in run_dir.iterdir()) == ["adapter.safetensors", "checkpoints"]
    selection = json.loads((out / "sola_select" / "select.json").read_text())
    assert (out / "sola_select" / "best.safetensors").is_file() and selection["checkpoints"]
    used = json.loads((out / "compare.json").read_text())["sola_adapter"]
    assert used["select_table"] == str(out / "sola_select" / "select.json")


def test_compare_out_that_is_an_existing_file_never_says_remove_it(capsys, paths):
    before = snapshot(paths["A"])
    line = fails(capsys, "compare", paths["F"], "--annotations", paths["A"], "--out", paths["A"],
                 says=("--annotations", "choose another output path"))
    assert "remove" not in line and snapshot(paths["A"]) == before  # it is an input: never "remove it"


DIRECTORY_OUTPUTS = {  # an output directory that is an existing file (not an input): "not a directory", no "remove"
    "compare": lambda p, out: ["compare", p["F"], "--annotations", p["A"], "--out", out],
    "ablate": lambda p, out: ["ablate", p["F"], "--annotations", p["A"], "--out", out],
    "detect": lambda p, out: ["detect", p["V"], "--head", p["TAL"], "--out", out],
    "extract": lambda p, out: ["extract", p["V"], "--out", out],
    "demo": lambda p, out: ["demo", "--out", out],
}


@pytest.mark.parametrize("command", sorted(DIRECTORY_OUTPUTS))
def test_an_output_directory_that_is_a_file_is_refused_without_suggesting_removal(capsys, paths, command):
    other = paths["root"] / "notes.txt"
    other.write_text("mine")
    line = fails(capsys, *DIRECTORY_OUTPUTS[command](paths, other),
                 says=("notes.txt", "not a directory", "choose another output directory"))
    assert "remove" not in line and other.read_text() == "mine"
