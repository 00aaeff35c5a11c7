"""Hostile run folders (issue "Trust I"): damaged run files, Ctrl-C and `--resume`, a run of the wrong kind,
corrupt checkpoints, warnings, and directories or devices given where a file is expected.

Every failure is one line on stderr naming the file (and the line, for `metrics.jsonl`), exit != 0, no
traceback. A new case is one line in one of the tables below; `{A}` is a `sola train` run, `{H}` a
`sola tal train` run (both copied per test, so a case may damage them), `{features}`, `{annotations}`,
`{out}` and `{tmp}` what their names say.
"""

from __future__ import annotations

import json
import shutil

import pytest

import sola.adapt.fit as fit_module
import sola.tal.train as tal_train_module
from sola.cli import main
from tests.hostile import bench, fails, run, snapshot  # noqa: F401 (bench is a fixture)

SMALL_FIT = ["--set", "adapter.hidden_dim=16", "--set", "matching.projector_dim=16", "--quiet"]
TINY_HEAD = ["--config", "tal_synthetic_cpu", "--quiet"] + [
    arg for pair in ("model.embd_dim=16", "model.head_dim=16", "model.n_head=2", "model.window_size=5",
                     "data.max_seq_len=64", "train.epochs=2", "train.warmup_epochs=0", "train.batch_size=2")
    for arg in ("--set", pair)]


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (tests/conftest.py)


def train_argv(bench, out, *extra):
    return ["train", bench["features"], "--out", out, "--epochs", "2", *SMALL_FIT, *extra]


def head_argv(bench, out, *extra):
    return ["tal", "train", bench["features"], "--annotations", bench["annotations"], "--out", out, *TINY_HEAD,
            *extra]


@pytest.fixture(scope="module")
def made(bench):
    """One finished adapter run (`A`) and one finished head run (`H`) on the bench, with predictions."""
    root = bench["root"] / "runs"
    assert main([str(a) for a in train_argv(bench, root / "A")]) == 0
    assert main([str(a) for a in head_argv(bench, root / "H")]) == 0
    results = {"synth_0000": [{"segment": [1.0, 5.0], "label": "not_a_class", "score": 0.9}]}
    (root / "H" / "predictions.json").write_text(json.dumps({"results": results}))
    return {"A": root / "A", "H": root / "H"}


@pytest.fixture
def paths(made, bench, tmp_path):
    """Fresh copies of the runs and the placeholders of the tables."""
    copies = {name: shutil.copytree(folder, tmp_path / name) for name, folder in made.items()}
    (tmp_path / "a_dir").mkdir()
    return {**copies, "features": bench["features"], "annotations": bench["annotations"], "out": tmp_path / "out",
            "tmp": tmp_path}


def fill(argv, paths):
    return [str(arg).format(**paths) for arg in argv]


# -- 1. damaged run files: one line naming the file (and the line) ------------------------------------------

def _append(text):
    return lambda path: path.write_text(path.read_text() + text)


def _halve(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _drop_key(key):
    def drop(path):
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        lines[-1].pop(key)
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return drop


def _json(value):
    return lambda path: path.write_text(json.dumps(value))


def _directory(path):
    path.unlink() if path.is_file() else shutil.rmtree(path)
    path.mkdir()


GARBAGE = lambda path: path.write_bytes(b"\x00\xff garbage {")  # noqa: E731
EMPTY = lambda path: path.write_bytes(b"")  # noqa: E731

REPORT = ["report", "{A}", "--out", "{tmp}/report.html"]
RESUME = train_argv({"features": "{features}"}, "{A}", "--resume")
SELECT = ["select", "{A}", "--annotations", "{annotations}", "--quiet"]
INFER = ["tal", "infer", "{H}", "{features}", "--annotations", "{annotations}", "--out", "{out}"]
EVAL = ["tal", "eval", "{H}", "--annotations", "{annotations}"]
HEAD_RESUME = head_argv({"features": "{features}", "annotations": "{annotations}"}, "{H}", "--resume")

DAMAGED = [  # (file in a run, damage, command, what the line must say)
    ("A/metrics.jsonl", _append("not json\n"), REPORT, ["metrics.jsonl line 3", "not a JSON line"]),
    ("A/metrics.jsonl", _append("not json\n"), RESUME, ["metrics.jsonl line 3", "--resume"]),
    ("A/metrics.jsonl", _drop_key("departure"), REPORT, ["metrics.jsonl line 2", "'departure'"]),
    ("A/metrics.jsonl", _drop_key("departure"), RESUME, ["metrics.jsonl line 2", "'departure'", "--resume"]),
    ("A/metrics.jsonl", _append('{"epoch": 3, "loss": "x", "gate": 0, "departure": 0, "seconds": 0, "steps": 1}\n'),
     REPORT, ["metrics.jsonl line 3", "loss is 'x'"]),
    ("A/metrics.jsonl", _append("[1, 2]\n"), REPORT, ["metrics.jsonl line 3", "JSON object"]),
    ("A/metrics.jsonl", GARBAGE, REPORT, ["metrics.jsonl"]),
    ("A/run.json", EMPTY, SELECT, ["run.json", "empty"]),
    ("A/run.json", _halve, SELECT, ["run.json", "not valid JSON"]),
    ("A/run.json", GARBAGE, REPORT, ["run.json"]),
    ("A/run.json", _json({"layout": "npy"}), SELECT, ["run.json", "'features'"]),
    ("A/run.json", _json([1]), RESUME, ["run.json", "JSON list"]),
    ("A/config.yaml", EMPTY, REPORT, ["config.yaml", "empty"]),
    ("A/config.yaml", EMPTY, RESUME, ["config.yaml", "empty"]),
    ("A/config.yaml", _halve, RESUME, ["config.yaml", "truncated"]),
    ("A/config.yaml", GARBAGE, REPORT, ["config.yaml"]),
    ("A/config.yaml", _directory, RESUME, ["config.yaml", "directory"]),
    ("A/select.json", GARBAGE, REPORT, ["select.json"]),
    ("A/select.json", _json({"best": "identity"}), REPORT, ["select.json", "'metric'"]),
    ("A/select.json", _json({"best": "identity", "metric": "m", "rows": 3}), REPORT, ["select.json", "'rows'"]),
    ("H/features.json", GARBAGE, INFER, ["features.json"]),
    ("H/features.json", _json({"encoder": "i3d"}), INFER, ["features.json", "'dim'"]),
    ("H/features.json", _json({"dim": "wide"}), INFER, ["features.json", "'dim'"]),
    ("H/classes.json", _halve, INFER, ["classes.json"]),
    ("H/classes.json", _json({"a": 1}), EVAL, ["classes.json", "JSON list"]),
    ("H/config.yaml", EMPTY, EVAL, ["config.yaml", "empty"]),
    ("H/config.yaml", _halve, INFER, ["config.yaml"]),
    ("H/config.yaml", EMPTY, ["tal", "train", "{features}", "--annotations", "{annotations}", "--resume", "{H}"],
     ["config.yaml", "empty"]),
    ("H/adapter.json", _json({"dim": "x"}), INFER, ["adapter.json"]),
    ("H/adapter.json", GARBAGE, INFER, ["adapter.json"]),
]


@pytest.mark.parametrize("name, damage, argv, says", DAMAGED,
                         ids=[f"{name}-{i}-{argv[0]}" for i, (name, _, argv, _) in enumerate(DAMAGED)])
def test_damaged_run_file_is_one_line_naming_it(capsys, paths, name, damage, argv, says):
    damage(paths["tmp"] / name)
    fails(capsys, *fill(argv, paths), says=tuple(says))


def test_damaged_transform_record_names_it(capsys, paths, bench):
    out = paths["tmp"] / "adapted"
    argv = ["transform", bench["features"], "--adapter", paths["A"], "--out", out, "--quiet"]
    assert run(capsys, *argv)[0] == 0
    for damage in (GARBAGE, EMPTY, _json([1]), _json({"input": 3})):
        damage(out / "sola_transform.json")
        fails(capsys, *argv, says=("sola_transform.json",))


# -- 2, 3. Ctrl-C, then the same command with --resume added --------------------------------------------------

def _interrupt_after_first(monkeypatch, module, name):
    """Make `module.name` raise KeyboardInterrupt (Ctrl-C) right after its first call."""
    original = getattr(module, name)

    def interrupted(*args, **kwargs):
        original(*args, **kwargs)
        monkeypatch.setattr(module, name, original)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, name, interrupted)


def test_train_interrupted_resumes_with_the_same_command(capsys, monkeypatch, bench, tmp_path):
    config = tmp_path / "fit.yaml"
    config.write_text("fit:\n  windows_per_video: 2\n")
    extra = ["--config", config, "--seed", "3", "--lr", "0.001", "--epochs", "3", "--device", "cpu"]
    assert run(capsys, *train_argv(bench, tmp_path / "whole", *extra))[0] == 0
    _interrupt_after_first(monkeypatch, fit_module, "_save_epoch")
    argv = train_argv(bench, tmp_path / "cut", *extra)
    code, _, err = run(capsys, *argv)
    assert code == 130 and "--resume" in err
    code, _, err = run(capsys, *argv, "--resume")
    assert code == 0, err
    for name in ("adapter.safetensors", "checkpoints/epoch_0003.safetensors"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    # --resume RUN with --out spelled another way is the same run; another value is still refused
    assert run(capsys, *argv[:2], "--resume", f"{tmp_path}/cut/", *argv[4:])[0] == 0
    fails(capsys, *train_argv(bench, tmp_path / "cut", *extra[:-4], "--lr", "0.01", "--resume"),
          says=("fit.lr", "0.001 -> 0.01"))


def test_head_interrupted_resumes_with_the_same_command(capsys, monkeypatch, bench, tmp_path):
    assert run(capsys, *head_argv(bench, tmp_path / "whole", "--seed", "2"))[0] == 0
    _interrupt_after_first(monkeypatch, tal_train_module, "save_train_state")
    argv = head_argv(bench, tmp_path / "cut", "--seed", "2")
    assert run(capsys, *argv)[0] == 130
    code, _, err = run(capsys, *argv, "--resume")
    assert code == 0, err
    assert (tmp_path / "cut" / "weights.safetensors").read_bytes() == \
        (tmp_path / "whole" / "weights.safetensors").read_bytes()


def _interrupt_first_epoch(monkeypatch, module, name):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(module, name, killed)


def test_head_killed_in_its_first_epoch_resumes_without_config(capsys, monkeypatch, bench, tmp_path):
    assert run(capsys, *head_argv(bench, tmp_path / "whole"))[0] == 0
    with monkeypatch.context() as patch:
        _interrupt_first_epoch(patch, tal_train_module, "_train_step")
        assert run(capsys, *head_argv(bench, tmp_path / "cut"))[0] == 130
    assert (tmp_path / "cut" / "config.yaml").is_file()  # written before the first epoch
    assert not (tmp_path / "cut" / "state.safetensors").exists()
    code, _, err = run(capsys, "tal", "train", bench["features"], "--annotations", bench["annotations"],
                       "--resume", tmp_path / "cut", "--quiet")
    assert code == 0, err
    import yaml

    configs = [yaml.safe_load((tmp_path / run / "config.yaml").read_text()) for run in ("cut", "whole")]
    assert configs[0] == configs[1]  # the run's own config, not the defaults (values equal; 4 may read 4.0)
    assert (tmp_path / "cut" / "weights.safetensors").read_bytes() == \
        (tmp_path / "whole" / "weights.safetensors").read_bytes()


def test_train_killed_in_its_first_epoch_resumes(capsys, monkeypatch, bench, tmp_path):
    with monkeypatch.context() as patch:
        _interrupt_first_epoch(patch, fit_module, "_train_epoch")
        assert run(capsys, *train_argv(bench, tmp_path / "cut", "--seed", "4"))[0] == 130
    code, out, err = run(capsys, *train_argv(bench, tmp_path / "cut", "--seed", "4", "--resume"))
    assert code == 0, err
    assert "trained 2 epochs" in out and "no finished epoch" in out


# -- 4, 8. a run of the other kind, or no run at all: one check, one message -------------------------------------

ADAPTER_NOT_HEAD = "is a SoLa adapter run (sola train), not a head run (sola tal train)"
HEAD_NOT_ADAPTER = "is a head run (sola tal train), not a SoLa adapter run (sola train)"
KINDS = [  # (command, what the line must say)
    (["tal", "eval", "{A}", "--annotations", "{annotations}"], [ADAPTER_NOT_HEAD]),
    (["tal", "infer", "{A}", "{features}", "--annotations", "{annotations}"], [ADAPTER_NOT_HEAD]),
    (head_argv({"features": "{features}", "annotations": "{annotations}"}, "{A}", "--resume"), [ADAPTER_NOT_HEAD]),
    (head_argv({"features": "{features}", "annotations": "{annotations}"}, "{A}"), [ADAPTER_NOT_HEAD]),
    (["select", "{H}", "--annotations", "{annotations}"], [HEAD_NOT_ADAPTER]),
    (["transform", "{features}", "--adapter", "{H}", "--out", "{out}"], [HEAD_NOT_ADAPTER]),
    (["probe", "{features}", "--annotations", "{annotations}", "--adapter", "{H}"], [HEAD_NOT_ADAPTER]),
    (["tsm", "{features}", "--video", "synth_0000", "--adapter", "{H}", "--out", "{tmp}/t.png"], [HEAD_NOT_ADAPTER]),
    (train_argv({"features": "{features}"}, "{H}", "--resume"), [HEAD_NOT_ADAPTER]),
    (train_argv({"features": "{features}"}, "{H}"), [HEAD_NOT_ADAPTER]),
    (["select", "{annotations}", "--annotations", "{annotations}"], ["is a file, not a run folder"]),
    (["select", "{tmp}/a_dir", "--annotations", "{annotations}"], ["a_dir is not a run folder"]),
    (["select", "{tmp}/nowhere", "--annotations", "{annotations}"], ["nowhere does not exist"]),
    (["tal", "infer", "{annotations}", "{features}", "--annotations", "{annotations}"], ["not a run folder"]),
    (["tal", "eval", "{tmp}/a_dir", "--annotations", "{annotations}"], ["a_dir is not a run folder"]),
]


@pytest.mark.parametrize("argv, says", KINDS, ids=[" ".join(argv[:2]) + f"-{i}" for i, (argv, _) in enumerate(KINDS)])
def test_a_run_of_the_wrong_kind_is_named(capsys, paths, argv, says):
    before = snapshot(paths["A"], paths["H"])
    fails(capsys, *fill(argv, paths), says=tuple(says))
    assert snapshot(paths["A"], paths["H"]) == before


# -- 5. unreadable checkpoints: corrupt, and the file named ---------------------------------------------------

def _truncate(path):
    path.write_bytes(path.read_bytes()[:300])


def _zero(path):
    path.write_bytes(b"")


CHECKPOINTS = [  # (file, damage, command, what the line must say)
    ("A/adapter.safetensors", _truncate, REPORT, ["A/adapter.safetensors", "corrupt"]),
    ("A/adapter.safetensors", _zero, REPORT, ["A/adapter.safetensors", "corrupt"]),
    ("A/adapter.safetensors", _directory, REPORT, ["A/adapter.safetensors", "a directory"]),
    ("A/adapter.safetensors", _truncate, ["transform", "{features}", "--adapter", "{A}", "--out", "{out}"],
     ["adapter.safetensors", "corrupt"]),
    ("A/adapter.safetensors", _directory, ["transform", "{features}", "--adapter", "{A}", "--out", "{out}"],
     ["adapter.safetensors", "a directory"]),
    ("A/adapter.safetensors", _directory, ["transform", "{features}", "--adapter", "{A}/adapter.safetensors",
                                           "--out", "{out}"], ["adapter.safetensors is a directory; give a file"]),
    ("A/adapter.safetensors", GARBAGE, ["probe", "{features}", "--annotations", "{annotations}", "--adapter", "{A}"],
     ["adapter.safetensors", "corrupt"]),
    ("A/checkpoints/epoch_0000.safetensors", _zero, SELECT, ["epoch_0000.safetensors", "empty file"]),
    ("A/checkpoints/epoch_0002.safetensors", _truncate, SELECT, ["epoch_0002.safetensors", "corrupt"]),
    ("A/state.safetensors", _truncate, RESUME, ["state.safetensors", "corrupt"]),
    ("A/state.safetensors", _directory, RESUME, ["state.safetensors", "a directory"]),
    ("H/weights.safetensors", _truncate, INFER, ["weights.safetensors", "corrupt"]),
    ("H/weights.safetensors", _directory, INFER, ["weights.safetensors", "a directory"]),
    ("H/state.safetensors", _zero, HEAD_RESUME, ["state.safetensors", "empty file"]),
]


@pytest.mark.parametrize("name, damage, argv, says", CHECKPOINTS,
                         ids=[f"{name}-{i}" for i, (name, *_) in enumerate(CHECKPOINTS)])
def test_an_unreadable_checkpoint_is_named_corrupt(capsys, paths, name, damage, argv, says):
    damage(paths["tmp"] / name)
    line = fails(capsys, *fill(argv, paths), says=tuple(says))
    assert "No such file" not in line and "store" not in line


def test_report_with_a_truncated_adapter_exits_2_blaming_it(capsys, paths):
    _truncate(paths["A"] / "adapter.safetensors")
    code, _, err = run(capsys, "report", paths["A"], "--out", paths["tmp"] / "r.html")
    assert code == 2 and "adapter.safetensors" in err and "fitted on" not in err


# -- 6. warnings reach the user as one plain note, never `file.py:12: UserWarning` --------------------------------

def test_a_library_warning_is_one_note(capsys, paths):
    code, out, err = run(capsys, "tal", "eval", paths["H"], "--annotations", paths["annotations"],
                         "--subset", "training")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.strip()]
    assert any(line.startswith("sola tal eval: note: ignored 1 predictions") for line in notes), err
    assert "Warning" not in err and ".py:" not in err and "warnings.warn" not in err


def test_any_warning_under_a_command_is_a_note(capsys, monkeypatch, paths):
    import warnings

    import sola.cli.tal as tal_cli

    def warn_twice(*args, **kwargs):
        warnings.warn("something odd\nover two lines", stacklevel=2)
        warnings.warn("something odd\nover two lines", stacklevel=2)
        raise KeyboardInterrupt

    monkeypatch.setattr(tal_cli, "evaluate_predictions", warn_twice)
    _, _, err = run(capsys, "tal", "eval", paths["H"], "--annotations", paths["annotations"], "--subset", "training")
    assert err.count("sola tal eval: note: something odd over two lines\n") == 1, err
    assert "UserWarning" not in err


# -- 7. a directory or a device where a file is expected -------------------------------------------------------

FILES = [  # (command, what the line must say)
    (["tal", "eval", "{H}", "--annotations", "{tmp}/a_dir"], ["annotation file", "a_dir is a directory; give a file"]),
    (["tal", "eval", "{H}", "--annotations", "/dev/null"], ["/dev/null is not a regular file"]),
    (["tal", "eval", "/dev/null", "--annotations", "{annotations}"], ["prediction file /dev/null is not a regular"]),
    (["eval-detection", "{annotations}", "{tmp}/a_dir", "--subset", "validation"],
     ["prediction file", "a_dir is a directory; give a file"]),
    (["eval-detection", "{tmp}/a_dir", "{H}/predictions.json"], ["annotation file", "is a directory"]),
    (["eval-proposals", "{annotations}", "/dev/null", "--subset", "validation"], ["/dev/null is not a regular file"]),
    (["train", "{features}", "--out", "{out}", "--config", "{tmp}/a_dir"], ["config file", "is a directory"]),
    (["train", "{features}", "--out", "{out}", "--config", "/dev/null"], ["config file", "is not a regular file"]),
    (["tal", "train", "{features}", "--annotations", "{annotations}", "--metadata", "{tmp}/a_dir", "--out", "{out}"],
     ["metadata file", "is a directory"]),
    (["transform", "{features}", "--adapter", "/dev/null", "--out", "{out}"], ["/dev/null", "not a regular file"]),
    (["transform", "/dev/null", "--adapter", "{A}", "--out", "{out}"], ["/dev/null is not a regular file"]),
    (["inspect", "{annotations}", "--layout", "npy"], ["annotations.json is a file, not a directory"]),
]


@pytest.mark.parametrize("argv, says", FILES, ids=[f"{argv[0]}-{i}" for i, (argv, _) in enumerate(FILES)])
def test_a_directory_or_device_for_a_file_is_named(capsys, paths, argv, says):
    line = fails(capsys, *fill(argv, paths), says=tuple(says))
    assert "does not exist" not in line
