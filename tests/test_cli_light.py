"""Commands that need no tensors never import torch (each run in a fresh process, `sys.modules` checked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO, shared_path, write_npy_store

# Runs `sola ARGV...` in this interpreter and prints the exit status and the heavy modules it imported.
PROBE = """
import json, sys
from sola.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:  # --help
    code = exc.code
heavy = sorted(name for name in ("torch", "sola.adapt.adapter", "sola.evaluate.probe.protocols", "sola.tal.model") if name in sys.modules)
print("LIGHT " + json.dumps({"code": code, "heavy": heavy}))
"""


def run_light(*argv, cwd: Path | None = None) -> dict:
    """Run the command in a subprocess; returns `{"code", "heavy", "out", "err"}`."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, argv)], capture_output=True, text=True, env=env,
                          cwd=cwd or REPO, timeout=120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("LIGHT ")]
    assert lines, f"the command did not finish: {done.stderr[-2000:]}"
    return {**json.loads(lines[-1][len("LIGHT "):]), "out": done.stdout, "err": done.stderr}


def assert_light(result: dict, code: int = 0) -> None:
    assert result["code"] == code, result["err"][-2000:]
    assert result["heavy"] == [], f"imported {result['heavy']}"


def test_help_builds_every_subcommand_without_torch():
    result = run_light("--help")
    assert result["code"] == 0 and "eval-detection" in result["out"] and "tal" in result["out"]
    assert result["heavy"] == []
    assert_light(run_light("tal", "--help"))
    for command in ("train", "probe", "compare", "ablate", "cost", "extract"):  # their --help, not their work
        assert_light(run_light(command, "--help"))


@pytest.fixture(scope="module")
def oracle():
    return shared_path("eval_oracle", "thumos14")


def test_eval_detection_and_proposals_without_torch(oracle, tmp_path):
    result = run_light("eval-detection", oracle / "gt.json", oracle / "pred.json", "--subset", "test",
                       "--json", tmp_path / "out.json")
    assert_light(result)
    assert json.loads((tmp_path / "out.json").read_text())["average_mAP"] > 0
    assert_light(run_light("eval-proposals", oracle / "gt.json", oracle / "pred.json", "--subset", "test"))


def test_tal_eval_of_a_file_and_of_a_run_without_torch(oracle, tmp_path):
    from sola.tal.config import TalConfig, save_tal_config

    assert_light(run_light("tal", "eval", oracle / "pred.json", "--annotations", oracle / "gt.json",
                           "--subset", "test"))
    run = tmp_path / "run"
    run.mkdir()
    save_tal_config(TalConfig(), run / "config.yaml")
    (run / "predictions.json").write_bytes((oracle / "pred.json").read_bytes())
    result = run_light("tal", "eval", run, "--annotations", oracle / "gt.json")
    assert_light(result)
    assert "test" in result["out"]


def test_show_without_torch(oracle, tmp_path):
    result = run_light("show", oracle / "pred.json", "--annotations", oracle / "gt.json", "--subset", "test",
                       "--out", tmp_path / "show", "--worst", "1")
    assert_light(result)
    assert (tmp_path / "show" / "show.json").is_file()


def test_inspect_synth_and_splice_without_torch(tmp_path):
    store = write_npy_store(tmp_path / "store", [12, 9], dim=4)
    assert_light(run_light("inspect", store, "--quiet"))
    assert_light(run_light("synth", tmp_path / "synth", "--videos", "2", "--dim", "4", "--classes", "2"))
    assert len(list((tmp_path / "synth" / "features").glob("*.npy"))) == 2
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(0)
    for name in ("run", "jump", "swim", "walk"):
        for n in range(4):
            np.save(clips / f"{name}_{n}.npy", rng.standard_normal((3, 4)).astype(np.float32))
    assert_light(run_light("splice", clips, tmp_path / "spliced", "--videos", "4", "--actions", "2",
                           "--clips-per-video", "2:3", "--quiet"))
    assert (tmp_path / "spliced" / "annotations.json").is_file()


def test_bad_input_to_a_light_command_is_one_line_without_torch(tmp_path):
    result = run_light("eval-detection", tmp_path / "missing.json", tmp_path / "pred.json")
    assert_light(result, code=2)
    assert result["err"].count("\n") == 1


def test_the_command_table_names_the_module_that_adds_each_command():
    import argparse

    from sola.cli import COMMANDS, build_parser

    def commands(parser):
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return list(action.choices)

    full = commands(build_parser())
    assert sorted(full) == sorted(COMMANDS)
    for command, module in COMMANDS.items():
        alone = commands(build_parser(command))
        assert command in alone and set(alone) == {c for c, m in COMMANDS.items() if m == module}
    assert commands(build_parser("no-such-command")) == full  # argparse then lists every choice
