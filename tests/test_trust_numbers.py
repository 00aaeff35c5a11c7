"""Every number says what it was scored on, and no verdict comes from a head that learned nothing (issue 29).

Coverage: the evaluators keep the official semantics (every ground-truth video of the subset counts) and say so
when predictions miss videos; `--covered-only` scores the covered ones. Heads score the videos that have
features and say how many of the subset that is.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sola.evaluate.metrics import Segments
from sola.evaluate.metrics.coverage import NO_FEATURES, cover
from tests.conftest import shared_path
from tests.hostile import bench, run  # noqa: F401 (bench is a fixture)

# -- coverage ------------------------------------------------------------------------------------------------


def test_cover_keeps_every_video_unless_asked_and_says_which_were_missed():
    truth = Segments.build(["a", "a", "b", "c"], [0, 5, 1, 2], [1, 6, 2, 3], ["x", "y", "x", "x"])
    whole, official = cover(truth, ["a", "z"], "test", scored_on_covered=False)
    assert len(whole) == 4 and (official.total, official.covered, official.scored) == (3, 1, 3)
    assert official.line().startswith("predictions cover 1 of 3 ground-truth videos of test; the other 2 count "
                                      "as misses, e.g. 'b'")
    alone, covered = cover(truth, ["a", "z"], "test", scored_on_covered=True, why=NO_FEATURES)
    assert alone.video.tolist() == ["a", "a"] and covered.scored == 1
    assert covered.line() == "scored on 1 of 3 test videos (2 have no features, e.g. 'b')"
    _, complete = cover(truth, ["a", "b", "c"], "test", scored_on_covered=True)
    assert complete.complete and complete.line() == "scored on all 3 test videos"
    from sola.core.errors import PredictionError

    with pytest.raises(PredictionError, match="none of the 0 covered videos"):
        cover(truth, ["z"], "test", scored_on_covered=True)


@pytest.fixture(scope="module")
def perfect_15(tmp_path_factory):
    """The issue's case: perfect predictions (the ground truth itself) for 15 of THUMOS14's test videos."""
    gt_path = shared_path("eval_oracle", "thumos14", "gt.json")
    database = json.loads(gt_path.read_text())["database"]
    videos = sorted(v for v, entry in database.items() if entry["annotations"])[:15]
    results = {v: [{"label": a["label"], "score": 1.0, "segment": [float(x) for x in a["segment"]]}
                   for a in database[v]["annotations"]] for v in videos}
    path = tmp_path_factory.mktemp("perfect") / "pred.json"
    path.write_text(json.dumps({"version": "VERSION 1.3", "results": results, "external_data": {}}))
    return gt_path, path, len(database)


@pytest.mark.parametrize("command", [["eval-detection", "{gt}", "{pred}"], ["eval-proposals", "{gt}", "{pred}"],
                                     ["tal", "eval", "{pred}", "--annotations", "{gt}", "--subset", "test"],
                                     ["show", "{pred}", "--annotations", "{gt}", "--out", "{out}"]],
                         ids=["eval-detection", "eval-proposals", "tal eval", "show"])
def test_evaluators_say_when_predictions_miss_videos(capsys, perfect_15, tmp_path, command):
    gt, pred, total = perfect_15
    args = [part.format(gt=gt, pred=pred, out=tmp_path / "show") for part in command]
    code, out, err = run(capsys, *args)
    assert code == 0, err
    missed = total - 15
    assert (f"predictions cover 15 of {total} ground-truth videos of test; the other {missed} count as misses"
            in out)
    code, out, err = run(capsys, *args, "--covered-only")
    assert code == 0, err
    assert f"scored on 15 of {total} test videos ({missed} have no predictions" in out


def test_perfect_predictions_score_100_on_the_videos_they_cover(capsys, perfect_15, tmp_path):
    gt, pred, _ = perfect_15
    code, out, _ = run(capsys, "eval-detection", gt, pred, "--json", tmp_path / "all.json")
    assert code == 0 and json.loads((tmp_path / "all.json").read_text())["average_mAP"] < 0.2  # the official cap
    code, out, _ = run(capsys, "eval-detection", gt, pred, "--covered-only", "--json", tmp_path / "covered.json")
    covered = json.loads((tmp_path / "covered.json").read_text())
    assert code == 0 and covered["average_mAP"] == pytest.approx(1.0)
    assert covered["coverage"]["covered"] == 15 and covered["coverage"]["scored_on_covered"]
    # the per-class ground-truth counts are those of the 15 videos
    database = json.loads(gt.read_text())["database"]
    results = json.loads(pred.read_text())["results"]
    counts = {}
    for video in results:
        for a in database[video]["annotations"]:
            counts[a["label"]] = counts.get(a["label"], 0) + 1
    assert {k: v["num_ground_truth"] for k, v in covered["per_class"].items() if v["num_ground_truth"]} == counts


def test_a_head_scores_the_videos_with_features_and_says_so(synthetic_small, tmp_path):
    """Features for only some test videos: the head is scored on those, and the result says K of N."""
    import shutil

    from sola.data.annotations import load_annotations
    from sola.data.stores import open_store
    from sola.tal.config import load_tal_config
    from sola.tal.experiment import run_experiment

    annotations = load_annotations(synthetic_small / "annotations.json")
    config = load_tal_config("tal_synthetic_cpu", {"train.epochs": 1, "train.warmup_epochs": 0})
    test = sorted(annotations.subset(config.data.test_subset))
    store_dir = tmp_path / "features"
    shutil.copytree(synthetic_small / "features", store_dir)
    for video in test[: len(test) // 2]:
        next(store_dir.glob(f"{video}.*")).unlink()
    result = run_experiment(open_store(store_dir), annotations, config, seed=0, out_dir=tmp_path / "run",
                            progress=False)
    kept = test[len(test) // 2:]
    coverage = result["coverage"]
    assert (coverage["total"], coverage["covered"], coverage["scored"]) == (len(test), len(kept), len(kept))
    assert coverage["line"].startswith(f"scored on {len(kept)} of {len(test)} {config.data.test_subset} videos "
                                       f"({len(test) - len(kept)} have no features")
    evaluation = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    expected = sum(1 for v in kept for s in annotations[v].segments if not s.ambiguous)
    assert sum(row["num_ground_truth"] for row in evaluation["per_class"].values()) == expected


# -- no verdict from a head that learned nothing -------------------------------------------------------------


def runs(values):
    return [{"mAP": {"0.50": v}, "average_mAP": v, "seconds_per_epoch": 1.0, "seed": s, "scoring": "x"}
            for s, v in enumerate(values)]


@pytest.mark.parametrize("baseline, sola, verdict", [
    ([0.00002, 0.00001, 0.00003], [0.00002, 0.00001, 0.00003], None),  # the "+0.0 [+0.0, +0.0]"
    ([0.0001], [0.0001], None),  # one seed, nothing learned
    ([0.004, 0.006, 0.005], [0.003, 0.002, 0.009], None),  # both under 1 point
    ([0.004, 0.006, 0.005], [0.30, 0.32, 0.31], "SoLa helps"),  # one head learned: a verdict
    ([0.40, 0.50, 0.45], [0.40, 0.50, 0.45], "no measurable difference"),
])
def test_no_verdict_from_heads_that_learned_nothing(baseline, sola, verdict):
    from sola.experiments.compare_table import format_markdown, summarise, verdict_lines
    from sola.tal.config import load_tal_config

    table = summarise({"baseline": runs(baseline), "sola": runs(sola)}, {}, load_tal_config("tal_synthetic_cpu"), 1.0)
    lines = verdict_lines(table)
    if verdict is None:
        assert lines == [lines[0]] and "the head learned nothing" in lines[0] and "no verdict" in lines[0]
        assert "train.epochs" in lines[0] and "helps" not in lines[0] and "no measurable" not in lines[0]
        assert "the head learned nothing" in format_markdown(table)
    else:
        assert verdict in lines[0] and all("learned nothing" not in line for line in lines)


def test_head_selection_without_basis_keeps_the_identity_and_says_why(tmp_path, monkeypatch):
    import sola.tal.experiment
    from sola.evaluate.select_head import head_select_checkpoint
    from sola.tal.config import load_tal_config
    from tests.test_select import make_run, smoother
    from tests.test_select_head import head_rule, noisy_toy

    store, annotations = noisy_toy(tmp_path)
    run_dir = make_run(tmp_path, {10: smoother()})
    nothing = iter([0.001, 0.002, 0.003, 0.0, 0.009, 0.004])  # identity's 3 seeds, then the checkpoint's
    monkeypatch.setattr(sola.tal.experiment, "run_experiment",
                        lambda *a, **k: {"average_mAP": next(nothing), "mAP": {"0.50": 0.0}})
    table = head_select_checkpoint(run_dir, store, annotations, load_tal_config("tal_synthetic_cpu"), head_rule())
    assert table["best"] == "identity" and table["no_basis"]
    assert table["message"].startswith("identity kept: no basis to judge: the proxy head learned nothing")
    assert "select.head_epochs" in table["message"] and "closest" not in table["message"]


def test_the_identity_is_never_named_a_challenger():
    from sola.evaluate.select_head import head_selection_reason

    gain = {"mean": 0.0, "std": 0.0, "n": 3, "low": 0.0, "high": 0.0}
    table = {"margin": 0.0, "seeds": 3, "identity_wins": True, "best": "identity", "rows": {
        "identity": {"mean": 0.3}, "epoch_0000": {"mean": 0.3, "gain": gain, "identity": True},
        "epoch_0005": {"mean": 0.29, "gain": {**gain, "mean": -0.01, "low": -0.02}}}}
    assert "closest: epoch_0005" in head_selection_reason(table)
    del table["rows"]["epoch_0005"]
    assert head_selection_reason(table) == "no checkpoint other than the identity to judge"


def test_probe_selection_at_chance_keeps_the_identity():
    from sola.evaluate.select import probe_at_chance

    metric = "lbfgs_balanced_accuracy"
    assert probe_at_chance({"identity": {metric: 0.5}, "epoch_0001": {metric: 0.505}}, metric).startswith(
        "the probe learned nothing")
    assert probe_at_chance({"identity": {metric: 0.5}, "epoch_0001": {metric: 0.7}}, metric) is None
    assert probe_at_chance({"identity": {"sgd_accuracy": 0.5}}, "sgd_accuracy") is None  # no fixed chance level
    assert np.isnan(float("nan")) and probe_at_chance({"identity": {metric: float("nan")}}, metric)


# -- one --bad-segments default ------------------------------------------------------------------------------


def subcommands(parser, prefix=()):
    """(words, parser) of every subcommand of the `sola` parser, nested ones (`tal train`) included."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from subcommands(sub, (*prefix, name))


def test_every_command_has_the_same_bad_segments_default():
    from sola.cli import build_parser
    from sola.data.annotations import DEFAULT_BAD_SEGMENTS, load_annotations

    defaults = {" ".join(words): action.default for words, sub in subcommands(build_parser())
                for action in sub._actions if "--bad-segments" in action.option_strings}
    assert len(defaults) >= 10 and set(defaults.values()) == {DEFAULT_BAD_SEGMENTS} == {"keep"}, defaults
    import inspect

    assert inspect.signature(load_annotations).parameters["bad_segments"].default == DEFAULT_BAD_SEGMENTS


def test_the_output_says_how_many_segments_were_kept_or_clipped(capsys, tmp_path):
    database = {"a": {"subset": "test", "duration": 10.0, "annotations": [
        {"label": "x", "segment": [1.0, 2.0]}, {"label": "x", "segment": [8.0, 14.0]}, {"label": "x", "segment": [12.0, 13.0]}]}}
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"database": database}))
    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps({"results": {"a": [{"label": "x", "score": 0.9, "segment": [1.0, 2.0]}]}}))
    code, _, err = run(capsys, "eval-detection", gt, pred)
    assert code == 0 and "kept 2 segment(s) outside their video as written (--bad-segments keep" in err
    code, _, err = run(capsys, "tal", "eval", pred, "--annotations", gt, "--subset", "test", "--bad-segments", "clip")
    assert code == 0 and "2 segment(s) outside their video: clipped or dropped 2 (--bad-segments clip" in err


# -- counts that are what ran; reports of head runs ----------------------------------------------------------


def test_tal_train_prints_the_epochs_it_runs_and_report_draws_the_run(capsys, bench, tmp_path):
    out = tmp_path / "head"
    code, _, err = run(capsys, "tal", "train", bench["features"], "--annotations", bench["annotations"], "--config",
                       "tal_synthetic_cpu", "--set", "train.epochs=2", "--set", "train.warmup_epochs=1",
                       "--set", "model.embd_dim=16", "--set", "model.head_dim=16", "--out", out, "--quiet")
    assert code == 0, err
    assert "3 epochs (1 warm-up + 2 train.epochs)" in err
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3  # what ran is what was said
    code, printed, err = run(capsys, "report", out)
    assert code == 0, err
    page = (out / "report.html").read_text()
    assert "TAL head" in page and 'id="run-summary"' in page and "head_curves" in (out / "report.md").read_text()
    assert ">3<" in page.replace(" ", "")  # epochs run
    assert "does not score the head per epoch" in page


def test_a_step_budget_says_what_ran_in_the_fit_report():
    from sola.viz.report.train import _budget_words

    records = [{"epoch": 1, "steps": 60}, {"epoch": 2, "steps": 40}]
    assert _budget_words("fit:\n  epochs: 150\n  steps: 100\n", records) == (
        " fit.steps 100 overrides fit.epochs 150: 2 epochs ran (100 steps).")
    assert _budget_words("fit:\n  epochs: 150\n  steps: 0\n", records) == ""


# -- messages that name the real cause -----------------------------------------------------------------------


def test_ids_that_match_nothing_are_named(capsys, bench, tmp_path):
    database = {f"v_other{k}": {"subset": "training", "duration": 10.0, "annotations": [
        {"label": "x", "segment": [1.0, 2.0]}]} for k in range(3)}
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"database": database}))
    code, out, err = run(capsys, "inspect", bench["features"], "--annotations", gt, "--quiet")
    assert code == 1 and "0 of 6 feature ids match the 3 annotated ids (e.g. 'synth_0000' vs 'v_other0')" in out
    code, _, err = run(capsys, "probe", bench["features"], "--annotations", gt, "--quiet", "--device", "cpu")
    assert code == 2 and "0 of 6 feature ids match the 3 annotated ids" in err


def test_swapped_ground_truth_and_predictions_are_named(capsys, perfect_15):
    gt, pred, _ = perfect_15
    for command in ("eval-detection", "eval-proposals"):
        code, _, err = run(capsys, command, pred, gt)
        assert code == 2 and "the two files look swapped" in err and len(err.strip().splitlines()) == 1


def test_videos_annotated_in_another_subset_are_not_called_unannotated(bench):
    from sola.core.errors import AnnotationError
    from sola.data.annotations import load_annotations
    from sola.data.stores import open_store
    from sola.tal.config import load_tal_config
    from sola.tal.experiment import build_items

    annotations = load_annotations(bench["annotations"])
    config = load_tal_config("tal_synthetic_cpu")
    with pytest.raises(AnnotationError, match=r"6 videos with features are annotated: (training|validation) \d") as info:
        build_items(open_store(bench["features"]), annotations, "testing", config, sorted(annotations.labels()))
    assert "with features but no annotation" not in str(info.value)
