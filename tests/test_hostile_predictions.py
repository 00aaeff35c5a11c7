"""Hostile prediction and annotation files (issue "Trust I"): pickles that run code, ids that would merge two
videos, labels of two kinds, JSON nested 100,000 deep, absurd counts, entries without a subset, and the usual
0-byte / truncated / wrong-type / special files, through eval-detection, eval-proposals, tal eval and show.

Each failure is exit 2 and one stderr line naming the file; each new case is one row of a table below.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from tests.hostile import bench, fails, one_line, run, snapshot  # noqa: F401 (bench is a fixture)

SUBSET = "training"
COMMANDS = {
    "eval-detection": ["eval-detection", "{gt}", "{pred}", "--subset", SUBSET],
    "eval-proposals": ["eval-proposals", "{gt}", "{pred}", "--subset", SUBSET],
    "tal eval": ["tal", "eval", "{pred}", "--annotations", "{gt}", "--subset", SUBSET],
    "show": ["show", "{pred}", "--annotations", "{gt}", "--subset", SUBSET, "--out", "{out}"],
}


def command(name: str, gt, pred, out, *extra) -> list[str]:
    return [a.format(gt=gt, pred=pred, out=out) for a in COMMANDS[name]] + [str(e) for e in extra]


def database(bench) -> dict:
    return json.loads(bench["annotations"].read_text())["database"]


def perfect(bench) -> dict:
    """ActivityNet-format predictions equal to the ground truth of every video."""
    return {"results": {video: [{"label": a["label"], "score": 0.9, "segment": a["segment"]}
                                for a in entry["annotations"]] for video, entry in database(bench).items()}}


def first_video(bench) -> str:
    return next(v for v, e in sorted(database(bench).items()) if e["subset"] == SUBSET and e["annotations"])


def write(path: Path, content) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def edited(bench, change) -> dict:
    """`perfect(bench)` after `change(results, first video)`."""
    data = perfect(bench)
    change(data["results"], first_video(bench))
    return data


def first_prediction(key, value):
    return lambda results, video: results[video][0].__setitem__(key, value)


# -- 1. prediction pickles go through the restricted unpickler ----------------------------------------


class RunsCode:
    """Unpickling this runs `touch MARKER` (through os.system, which pickles as posix.system)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_prediction_pickle_that_runs_code_is_refused(capsys, bench, tmp_path, name):
    marker = tmp_path / "ran"
    flat = {"video-id": [first_video(bench)], "t-start": [1.0], "t-end": [2.0], "label": [RunsCode(marker)],
            "score": [0.5]}
    evil = write(tmp_path / "evil.pkl", pickle.dumps({"results": flat} if name == "tal eval" else flat))
    line = fails(capsys, *command(name, bench["annotations"], evil, tmp_path / "out"),
                 says=("evil.pkl", "asks for posix.system", "only NumPy arrays, dicts, lists and scalars are read"))
    assert line.startswith(f"sola {name}: error:") and not marker.exists()
    assert run(capsys, *command(name, bench["annotations"], evil, tmp_path / "out"))[0] == 2


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_actionformer_eval_results_pickle_still_loads(capsys, bench, tmp_path, protocol):
    """ActionFormer's eval_results.pkl: video ids as a list, times and scores float32 arrays, labels int64 ids."""
    rows = [(video, a["segment"], a["label_id"])
            for video, entry in database(bench).items() for a in entry["annotations"]]
    results = {"video-id": [r[0] for r in rows], "t-start": np.array([r[1][0] for r in rows], np.float32),
               "t-end": np.array([r[1][1] for r in rows], np.float32), "label": np.array([r[2] for r in rows]),
               "score": np.full(len(rows), 0.9, np.float32)}
    path = write(tmp_path / "eval_results.pkl", pickle.dumps(results, protocol=protocol))
    code, out, err = run(capsys, "eval-detection", bench["annotations"], path, "--subset", SUBSET, "--tiou", "0.5")
    assert code == 0, err
    assert re.search(r"avg\s+100\.00", out), out


# Calls that unpickle, unsafely load YAML or torch archives; the shared restricted unpickler is the one place.
UNSAFE = [
    (r"\bpickle\.loads?\(", "pickle.load"),
    (r"\bpickle\.Unpickler\(|_pickle\.|\bcPickle\b", "a plain Unpickler"),
    (r"\b(dill|joblib|jsonpickle|shelve|marshal)\.(loads?|open)\(", "another unpickler"),
    (r"\bread_pickle\(", "pandas.read_pickle"),
    (r"allow_pickle\s*=\s*True", "np.load(allow_pickle=True)"),
    (r"\byaml\.(load|load_all|unsafe_load|full_load)\(|yaml\.(Unsafe|Full)?Loader\b", "yaml.load"),
    (r"\btorch\.(load|jit\.load)\((?![^)]*weights_only\s*=\s*True)", "torch.load without weights_only=True"),
]
# Subclasses of pickle.Unpickler that restrict find_class: the shared one and the I3D checkpoint's (arrays only).
RESTRICTED_UNPICKLERS = {"sola/core/safe_load.py", "sola/extract/weights.py"}


def test_no_module_of_src_deserialises_unsafely():
    src = Path(__file__).resolve().parents[1] / "src"
    found = []
    for path in sorted(src.rglob("*.py")):
        name = path.relative_to(src).as_posix()
        text = path.read_text()
        flat = re.sub(r"\s+", " ", text)  # calls split over lines
        for pattern, what in UNSAFE:
            found += [f"{name}: {what}" for _ in re.finditer(pattern, flat)]
        if re.search(r"class \w+\(pickle\.Unpickler\)", text):
            if name not in RESTRICTED_UNPICKLERS or "def find_class" not in text:
                found.append(f"{name}: an Unpickler subclass outside {sorted(RESTRICTED_UNPICKLERS)}")
    assert found == [], "unsafe loading; use sola.core.safe_load (load_pickle, read_json): " + "; ".join(found)


def test_the_grep_catches_what_it_should():
    for line in ["x = pickle.load(f)", "pickle.loads(b)", "np.load(p, allow_pickle=True)", "yaml.load(t)",
                 "torch.load(f, map_location='cpu')", "yaml.load(t, Loader=yaml.FullLoader)"]:
        assert any(re.search(pattern, line) for pattern, _ in UNSAFE), line
    for line in ["torch.load(f, map_location='cpu', weights_only=True)", "yaml.safe_load(t)", "np.load(p)",
                 "load_pickle(path, StoreError)"]:
        assert not any(re.search(pattern, line) for pattern, _ in UNSAFE), line


# -- 2. two ids of one video are refused, never merged ------------------------------------------------


ALIASES = [
    ("v_", lambda video: "v_" + video),
    ("extension", lambda video: video + ".mp4"),
]


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("alias", [a for _, a in ALIASES], ids=[i for i, _ in ALIASES])
def test_predictions_naming_one_video_twice_are_refused(capsys, bench, tmp_path, name, alias):
    video = first_video(bench)
    data = edited(bench, lambda results, v: results.__setitem__(alias(v), list(results[v])))
    path = write(tmp_path / "p.json", data)
    fails(capsys, *command(name, bench["annotations"], path, tmp_path / "out"),
          says=("p.json", repr(video), repr(alias(video)), "name the same video"))


def test_ground_truth_naming_one_video_twice_is_refused(capsys, bench, tmp_path):
    raw = json.loads(bench["annotations"].read_text())
    video = first_video(bench)
    raw["database"]["v_" + video] = raw["database"][video]
    gt = write(tmp_path / "gt.json", raw)
    predictions = write(tmp_path / "p.json", perfect(bench))
    for name in COMMANDS:
        fails(capsys, *command(name, gt, predictions, tmp_path / "out"),
              says=("gt.json", repr(video), repr("v_" + video), "name the same video"))


def test_v_ids_alone_are_still_matched(capsys, bench, tmp_path):
    data = perfect(bench)
    data["results"] = {"v_" + video: items for video, items in data["results"].items()}
    code, out, err = run(capsys, "eval-detection", bench["annotations"], write(tmp_path / "p.json", data),
                         "--subset", SUBSET, "--tiou", "0.5")
    assert code == 0 and re.search(r"avg\s+100\.00", out), err


# -- 3 and own cases: hostile prediction files, one row each, through every command -----------------------

DEEP = 100_000
PREDICTION_CASES = [
    # (id, file name, content or function of bench, what the line says)
    ("int label among names", "p.json", lambda b: edited(b, lambda r, v: r[v][-1].__setitem__("label", 3)),
     "class id among class names"),
    ("int label first", "p.json", lambda b: edited(b, first_prediction("label", 0)), "class id among class names"),
    ("float label", "p.json", lambda b: edited(b, first_prediction("label", 2.5)), "neither a class name"),
    ("list label", "p.json", lambda b: edited(b, first_prediction("label", ["a"])), "neither a class name"),
    ("deep list", "p.json", "[" * DEEP + "]" * DEEP, "too deeply nested"),
    ("deep results", "p.json", '{"results": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}", "too deeply nested"),
    ("0-byte json", "p.json", "", "empty file"),
    ("0-byte pickle", "p.pkl", b"", "not a readable pickle"),
    ("truncated pickle", "p.pkl", pickle.dumps({"results": {}})[:-3], "not a readable pickle"),
    ("truncated json", "p.json", lambda b: json.dumps(perfect(b))[:150], "not valid JSON"),
    ("not utf-8", "p.json", '{"results": {"vidéo": []}}'.encode("latin-1"), "not a UTF-8 text file"),
    ("a list", "p.json", "[1, 2]", "p.json"),
    ("a number", "p.json", "3", "p.json"),
    ("a string", "p.json", '"abc"', "p.json"),
    ("null", "p.json", "null", "p.json"),
    ("results a list", "p.json", '{"results": [1, 2]}', "p.json"),
    ("NaN score", "p.json", lambda b: json.dumps(perfect(b)).replace('"score": 0.9', '"score": NaN', 1),
     "non-finite score"),
    ("Infinity score", "p.json", lambda b: json.dumps(perfect(b)).replace('"score": 0.9', '"score": Infinity', 1),
     "non-finite score"),
    ("400-digit score", "p.json", lambda b: json.dumps(perfect(b)).replace('"score": 0.9', '"score": 1' + "0" * 400, 1),
     "not a number within float range"),
    ("huge times", "p.json", lambda b: edited(b, first_prediction("segment", [1e308, 1.7e308])),
     "beyond 1e+09 seconds"),
    ("huge span", "p.json", lambda b: edited(b, first_prediction("segment", [-1.7e308, 1.7e308])),
     "beyond 1e+09 seconds"),
    ("prediction a number", "p.json", lambda b: edited(b, lambda r, v: r[v].__setitem__(0, 5)), "malformed prediction"),
    ("a directory", "p.json", "DIR", "directory"),  # tal eval: "a directory but not a TAL run"
    ("a FIFO", "p.json", "FIFO", "not a regular file (a named pipe (FIFO))"),
]


def materialise(tmp_path: Path, bench, file_name: str, content) -> Path:
    path = tmp_path / file_name
    content = content(bench) if callable(content) else content
    if content == "DIR":
        path.mkdir()
    elif content == "FIFO":
        os.mkfifo(path)
    else:
        write(path, content)
    return path


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("file_name, content, says", [c[1:] for c in PREDICTION_CASES],
                         ids=[c[0] for c in PREDICTION_CASES])
def test_a_hostile_prediction_file_is_one_line(capsys, bench, tmp_path, name, file_name, content, says):
    path = materialise(tmp_path, bench, file_name, content)
    before = snapshot(bench["root"])
    line = fails(capsys, *command(name, bench["annotations"], path, tmp_path / "out"), says=(file_name, says))
    assert line.startswith(f"sola {name}: error:")
    assert snapshot(bench["root"]) == before and not (tmp_path / "out").exists()


def test_dev_null_is_no_prediction_file(capsys, bench, tmp_path):
    for name in COMMANDS:
        fails(capsys, *command(name, bench["annotations"], "/dev/null", tmp_path / "out"),
              says=("/dev/null", "not a regular file"))


def test_tal_eval_external_data_of_the_wrong_type_is_not_fused():
    from sola.cli.tal import _fused  # asked of a one-class run's predictions only

    assert _fused({"external_data": "yes"}) is False and _fused({"external_data": {"used": True}}) is True


@pytest.mark.parametrize("change", [lambda b: edited(b, first_prediction("segment", [-50.0, -10.0]))],
                         ids=["negative times"])
def test_legal_odd_predictions_still_evaluate(capsys, bench, tmp_path, change):
    path = write(tmp_path / "p.json", change(bench))
    for name in ("eval-detection", "eval-proposals", "tal eval"):
        code, _, err = run(capsys, *command(name, bench["annotations"], path, tmp_path / "out"))
        assert code == 0 and "Traceback" not in err, err


# -- absurd counts: bounded by what exists, or refused with the figure ----------------------------------


def test_show_top_k_beyond_every_prediction_is_cut_not_allocated(capsys, bench, tmp_path):
    predictions = write(tmp_path / "p.json", perfect(bench))
    code, out, err = run(capsys, *command("show", bench["annotations"], predictions, tmp_path / "out"),
                         "--top-k", 10**9, "--worst", 10**9)  # the 44.7 GiB case
    assert code == 0, err
    assert "--top-k 1000000000 reaches past every prediction; the analysis stops at 10G" in err
    assert "top 10G predictions" in out


COUNT_FLAGS = [
    ("eval-proposals", ["--max-proposals", "1e308"], ("--max-proposals", "<= 1e+06", "1e308")),
    ("eval-detection", ["--tiou", "0.01:1e-12:1"], ("0.01:1e-12:1", "990000000001 thresholds", "at most 1000")),
    ("eval-proposals", ["--tiou", "0.01:1e-12:1"], ("990000000001 thresholds",)),
    ("tal eval", ["--tiou", "0.01:1e-12:1"], ("990000000001 thresholds",)),
    ("show", ["--tiou", "0.01:1e-12:1"], ("990000000001 thresholds",)),
    ("eval-detection", ["--tiou=-inf:0.1:1"], ("cannot read tIoU thresholds",)),
]


@pytest.mark.parametrize("name, flags, says", COUNT_FLAGS, ids=[f"{c[0]} {' '.join(c[1])}" for c in COUNT_FLAGS])
def test_absurd_counts_are_refused_with_the_figure(capsys, bench, tmp_path, name, flags, says):
    predictions = write(tmp_path / "p.json", perfect(bench))
    fails(capsys, *command(name, bench["annotations"], predictions, tmp_path / "out"), *flags, says=says)


# -- 4. annotation entries: silently dropped no more; hostile annotation files ----------------------------


def edited_ground_truth(bench, change) -> dict:
    raw = json.loads(bench["annotations"].read_text())
    change(raw["database"][first_video(bench)])
    return raw


GROUND_TRUTH_WARNINGS = [
    # (id, change of the first training video's entry, what the warning says)
    ("no subset", lambda e: e.pop("subset"), "1 of 6 videos have no subset"),
    ("no annotations key", lambda e: e.pop("annotations"), "1 of 6 videos have no 'annotations' list"),
    ("null annotations", lambda e: e.__setitem__("annotations", None), "have no 'annotations' list"),
    ("no duration", lambda e: e.pop("duration"), "1 of 6 videos have no duration"),
]


@pytest.mark.parametrize("change, says", [c[1:] for c in GROUND_TRUTH_WARNINGS],
                         ids=[c[0] for c in GROUND_TRUTH_WARNINGS])
def test_an_entry_lacking_what_others_have_is_named(capsys, bench, tmp_path, change, says):
    gt = write(tmp_path / "gt.json", edited_ground_truth(bench, change))
    predictions = write(tmp_path / "p.json", perfect(bench))
    code, _, err = run(capsys, "eval-detection", gt, predictions, "--subset", SUBSET)
    warnings_ = [line for line in err.splitlines() if ": warning: " in line]
    assert code == 0 and len(warnings_) == 1, err
    assert "gt.json" in warnings_[0] and says in warnings_[0] and repr(first_video(bench)) in warnings_[0]


def test_the_warning_is_given_to_every_command_every_time(capsys, bench, tmp_path):
    gt = write(tmp_path / "gt.json", edited_ground_truth(bench, lambda e: e.pop("subset")))
    predictions = write(tmp_path / "p.json", perfect(bench))
    for name in list(COMMANDS) + ["eval-detection"]:
        _, _, err = run(capsys, *command(name, gt, predictions, tmp_path / "out"))
        assert f"sola {name}: warning: " in err and "have no subset" in err, (name, err)


def test_a_ground_truth_without_subsets_at_all_gives_no_warning(capsys, bench, tmp_path):
    raw = json.loads(bench["annotations"].read_text())
    for entry in raw["database"].values():
        entry.pop("subset")
    gt = write(tmp_path / "gt.json", raw)
    code, _, err = run(capsys, "eval-detection", gt, write(tmp_path / "p.json", perfect(bench)))
    assert code == 0 and "warning" not in err, err


def test_library_callers_get_a_sola_warning(bench, tmp_path):
    from sola.core.errors import SolaWarning
    from sola.data.annotations import load_annotations

    gt = write(tmp_path / "gt.json", edited_ground_truth(bench, lambda e: e.pop("subset")))
    with pytest.warns(SolaWarning, match="have no subset"):
        annotations = load_annotations(gt)
    assert annotations[first_video(bench)].subset == ""


def test_bsn_videos_missing_from_video_info_are_named(bench, tmp_path):
    from sola.core.errors import SolaWarning
    from sola.data.annotations import load_annotations

    entries = {video: {"duration_second": entry["duration"], "duration_frame": int(entry["duration"] * 30),
                       "annotations": entry["annotations"]} for video, entry in database(bench).items()}
    anno = write(tmp_path / "anet_anno_action.json", entries)
    listed = sorted(entries)[1:]
    info = tmp_path / "video_info_new.csv"
    info.write_text("video,numFrame,seconds,fps,rfps,subset,featureFrame\n"
                    + "".join(f"{v},100,10,30,30,training,96\n" for v in listed))
    with pytest.warns(SolaWarning, match=rf"1 of 6 videos have no subset.*{sorted(entries)[0]}"):
        load_annotations(anno, metadata=info)


GROUND_TRUTH_CASES = [
    # (id, content: a function of bench, or file content, what the line says)
    ("annotations a dict",
     lambda b: edited_ground_truth(b, lambda e: e.__setitem__("annotations", {"segment": [1, 2]})),
     "'annotations' must be a list"),
    ("annotations a string", lambda b: edited_ground_truth(b, lambda e: e.__setitem__("annotations", "abc")),
     "'annotations' must be a list"),
    ("annotation a number", lambda b: edited_ground_truth(b, lambda e: e.__setitem__("annotations", [5])),
     "expected a mapping"),
    ("400-digit duration", lambda b: json.dumps(edited_ground_truth(b, lambda e: e.__setitem__("duration", 7)))
     .replace('"duration": 7', '"duration": 1' + "0" * 400, 1), "not a number within float range"),
    ("huge segment", lambda b: edited_ground_truth(
        b, lambda e: e["annotations"][0].__setitem__("segment", [1e300, 1.5e300])), "keep"),
    ("deep database", '{"database": ' + '{"a": ' * DEEP + "1" + "}" * DEEP + "}", "too deeply nested"),
    ("deep list", "[" * DEEP + "]" * DEEP, "too deeply nested"),
    ("0-byte", "", "empty file"),
    ("truncated", lambda b: b["annotations"].read_text()[:200], "not valid JSON"),
    ("a number", "7", "unrecognised annotation JSON"),
    ("a directory", "DIR", "is a directory"),
    ("a FIFO", "FIFO", "not a regular file (a named pipe (FIFO))"),
]


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("content, says", [c[1:] for c in GROUND_TRUTH_CASES], ids=[c[0] for c in GROUND_TRUTH_CASES])
def test_a_hostile_annotation_file_is_one_line(capsys, bench, tmp_path, name, content, says):
    gt = materialise(tmp_path, bench, "gt.json", content)
    predictions = write(tmp_path / "p.json", perfect(bench))
    if says == "keep":  # refused under every --bad-segments policy, by the loader's bound
        says = "beyond 1e+09 seconds"
    line = fails(capsys, *command(name, gt, predictions, tmp_path / "out"), says=("gt.json", says))
    assert line.startswith(f"sola {name}: error:")


def test_a_deep_annotation_file_is_one_line_for_training_commands_too(capsys, bench, tmp_path):
    gt = write(tmp_path / "gt.json", "[" * DEEP + "]" * DEEP)
    fails(capsys, "probe", bench["features"], "--annotations", gt, says=("gt.json", "too deeply nested"))


def test_any_other_recursion_error_is_one_line(capsys, bench, tmp_path, monkeypatch):
    import sola.cli.evaluate

    def recurse(*args, **kwargs):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(sola.cli.evaluate, "parse_tiou", recurse)
    predictions = write(tmp_path / "p.json", perfect(bench))
    fails(capsys, "eval-detection", bench["annotations"], predictions, "--subset", SUBSET,
          says=("eval-detection", "too deeply nested"))


def test_tal_eval_prints_its_notes_only_after_evaluating(capsys, bench, tmp_path):
    """The refusals above print nothing before their error (tal eval's notes come after evaluating)."""
    gt = write(tmp_path / "gt.json", edited_ground_truth(
        bench, lambda e: e["annotations"][0].__setitem__("segment", [1e300, 1.5e300])))
    extra = perfect(bench)
    extra["results"]["nowhere"] = [{"label": "x", "score": 0.5, "segment": [1, 2]}]
    _, _, err = run(capsys, *command("tal eval", gt, write(tmp_path / "p.json", extra), None))
    assert "beyond 1e+09 seconds" in one_line(err)
