"""`sola show` and `sola.viz.show`: the numbers behind the figures, the worst-video ranking, the CLI end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sola.cli import main
from sola.core.errors import PredictionError
from sola.evaluate.metrics import (ERROR_TYPES, Segments, evaluate_detection, false_positive_analysis,
                                   interpolated_average_precision)
from sola.viz.show import (format_error_table, mean_precision_curve, precision_recall_curves, rank_videos,
                           show_predictions)
from tests.test_metrics_errors import CASES, GROUND_TRUTH, PREDICTIONS

PNG = b"\x89PNG\r\n\x1a\n"
ANNOTATIONS = {
    "version": "toy",
    "database": {
        "A": {"subset": "validation", "duration": 100.0, "annotations": [
            {"label": "jump", "segment": [10.0, 20.0]}, {"label": "run", "segment": [40.0, 50.0]}]},
        "B": {"subset": "validation", "duration": 30.0, "annotations": [{"label": "jump", "segment": [5.0, 15.0]}]},
        "T": {"subset": "training", "duration": 30.0, "annotations": [{"label": "jump", "segment": [0.0, 9.0]}]},
    },
}


def official(predictions: Segments) -> dict:
    """The ActivityNet result layout of `predictions`."""
    results: dict[str, list] = {}
    for v, s, e, label, score in zip(predictions.video, predictions.start, predictions.end, predictions.label,
                                     predictions.score):
        results.setdefault(str(v), []).append({"label": str(label), "score": float(score), "segment": [s, e]})
    return {"version": "toy", "results": results}


@pytest.fixture
def files(tmp_path):
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(ANNOTATIONS))
    pred = tmp_path / "run" / "pred.json"
    pred.parent.mkdir()
    pred.write_text(json.dumps(official(PREDICTIONS)))
    return ann, pred


def test_precision_recall_curves_integrate_to_the_evaluators_ap():
    curves = precision_recall_curves(GROUND_TRUTH, PREDICTIONS, 0.5)
    result = evaluate_detection(GROUND_TRUTH, PREDICTIONS, [0.5])
    assert sorted(curves) == sorted(result.classes)
    for k, name in enumerate(result.classes):
        recall, precision = curves[name]
        hits = np.diff(np.concatenate([[0.0], recall])) > 0  # the true positives, in score order
        ap = interpolated_average_precision(hits[None, :], int(result.num_ground_truth[k]))[0]
        assert ap == pytest.approx(result.ap[0, k]), name
        assert precision[-1] == pytest.approx(recall[-1] * result.num_ground_truth[k] / len(recall))
    assert curves["jump"][0].tolist() == pytest.approx([0, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0])
    grid, mean = mean_precision_curve(curves)
    assert mean[0] == pytest.approx((0.5 + 0.5) / 2) and mean[-1] == pytest.approx((2 / 7 + 0.5) / 2)


def test_worst_videos_lowest_recall_then_most_false_positives():
    # Without B's own true positive (score 0.5), B's recall is 0: it is the worst video.
    ranking = rank_videos(GROUND_TRUTH, PREDICTIONS, 0.5, min_score=0.6)
    assert [row["video"] for row in ranking] == ["B", "A"]
    assert ranking[0] == {"video": "B", "num_ground_truth": 1, "true_positives": 0, "false_positives": 1, "recall": 0.0}
    assert ranking[1]["recall"] == 0.5 and ranking[1]["false_positives"] == 3  # run's 0.2 is below 0.6
    # With every prediction both have recall 1: A has more false positives (4 against 1).
    assert [row["video"] for row in rank_videos(GROUND_TRUTH, PREDICTIONS, 0.5)] == ["A", "B"]


def test_show_predictions_writes_figures_and_numbers(tmp_path):
    shown = show_predictions(PREDICTIONS, GROUND_TRUTH, tmp_path / "out", [0.5, 0.7], worst=1,
                             durations={"A": 100.0, "B": float("nan")})
    for path in list(shown["figures"].values()) + list(shown["timelines"].values()):
        assert path.read_bytes()[:8] == PNG, path
    assert list(shown["timelines"]) == ["A"]
    data = json.loads(shown["json"].read_text())
    expected = evaluate_detection(GROUND_TRUTH, PREDICTIONS, [0.5, 0.7])
    assert data["detection"]["mAP"] == pytest.approx(list(expected.mAP))
    assert data["false_positive_analysis"]["map_gain"] == pytest.approx(
        false_positive_analysis(GROUND_TRUTH, PREDICTIONS, [0.5, 0.7]).map_gain)
    markdown = shown["markdown"].read_text()
    assert "| background | 33.3 | 4 |" in markdown and "| confusion | 16.7 | 2 | +25.00 |" in markdown
    chosen = show_predictions(PREDICTIONS, GROUND_TRUTH, tmp_path / "chosen", [0.5], videos=["C", "B"])
    assert list(chosen["timelines"]) == ["C", "B"]  # C: predictions only
    with pytest.raises(PredictionError, match="'nope'"):
        show_predictions(PREDICTIONS, GROUND_TRUTH, tmp_path / "bad", [0.5], videos=["nope"])


def test_format_error_table():
    table = format_error_table(false_positive_analysis(GROUND_TRUTH, PREDICTIONS, [0.5]))
    lines = table.splitlines()
    assert len(lines) == 2 + len(ERROR_TYPES)
    assert lines[-1].split() == ["background", "33.3", "2", "+2.86"]
    assert lines[-2].split() == ["confusion", "16.7", "1", "+25.00"]


def test_cli_end_to_end(files, capsys):
    ann, pred = files
    assert main(["show", str(pred), "--annotations", str(ann), "--subset", "val", "--tiou", "0.5", "--worst", "2"]) == 0
    out = pred.parent / "show"  # beside the predictions by default
    printed = capsys.readouterr().out
    assert "confusion" in printed and str(out) in printed
    for name in ("ap_per_class.png", "map_tiou.png", "precision_recall.png", "errors.png",
                 "timelines/01_A.png", "timelines/02_B.png"):
        assert (out / name).read_bytes()[:8] == PNG, name
    data = json.loads((out / "show.json").read_text())
    # C is no annotated video of the validation subset: its prediction is a background error, as in the library.
    result = evaluate_detection(GROUND_TRUTH, PREDICTIONS, [0.5])
    assert data["detection"]["average_mAP"] == pytest.approx(result.average_mAP)
    analysis = data["false_positive_analysis"]
    assert analysis["counts"] == {"double detection": 1, "wrong label": 1, "localization": 1, "confusion": 1,
                                  "background": 2}
    assert analysis["map_gain"]["confusion"] == pytest.approx(0.25)
    assert [v["video"] for v in data["timelines"]["videos"]] == ["A", "B"]
    assert "| confusion |" in (out / "show.md").read_text()


def test_cli_chosen_videos_and_own_out(files, tmp_path):
    ann, pred = files
    out = tmp_path / "mine"
    assert main(["show", str(pred), "--annotations", str(ann), "--subset", "validation", "--tiou", "0.5",
                 "--videos", "v_B", "--out", str(out), "--min-score", "0.6"]) == 0
    data = json.loads((out / "show.json").read_text())
    assert [v["video"] for v in data["timelines"]["videos"]] == ["B"]
    assert data["timelines"]["videos"][0]["recall"] == 0.0 and (out / "timelines" / "01_B.png").is_file()


@pytest.mark.parametrize("change, message", [
    (["--subset", "testing"], "no subset 'testing'"),
    ([], "several subsets"),
    (["--subset", "training"], "none of its"),
    (["--subset", "val", "--videos", "nope"], "'nope'"),
])
def test_cli_bad_input_is_one_line(files, capsys, change, message):
    ann, pred = files
    assert main(["show", str(pred), "--annotations", str(ann), "--tiou", "0.5", *change]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sola show: error:") and message in err, err


def test_cli_missing_files_are_one_line(files, capsys, tmp_path):
    ann, pred = files
    assert main(["show", str(tmp_path / "none.json"), "--annotations", str(ann), "--subset", "val"]) == 2
    assert main(["show", str(pred), "--annotations", str(tmp_path / "none.json"), "--subset", "val"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all("does not exist" in line for line in err), err


def test_cases_cover_every_category():
    assert {category for _, category, _ in CASES} == {"true positive", *ERROR_TYPES}


def test_cli_into_the_same_out_removes_its_stale_timelines_only(files, tmp_path):
    ann, pred = files
    out = tmp_path / "again"
    args = ["show", str(pred), "--annotations", str(ann), "--subset", "validation", "--tiou", "0.5", "--out", str(out)]
    assert main([*args, "--worst", "2"]) == 0
    assert sorted(p.name for p in (out / "timelines").iterdir()) == ["01_A.png", "02_B.png"]
    (out / "timelines" / "my_notes.png").write_bytes(PNG)  # not ours: kept
    assert main([*args, "--videos", "B"]) == 0
    assert sorted(p.name for p in (out / "timelines").iterdir()) == ["01_B.png", "my_notes.png"]
    assert main([*args, "--worst", "0"]) == 0
    assert sorted(p.name for p in (out / "timelines").iterdir()) == ["my_notes.png"]


def test_error_pie_labels_do_not_overlap_for_small_slices(tmp_path, monkeypatch):
    import dataclasses

    import sola.viz.show
    from sola.viz.show import error_figure

    analysis = false_positive_analysis(GROUND_TRUTH, PREDICTIONS, [0.5])
    # one large slice and four thin neighbours, the case whose labels piled up
    fractions = dict(zip(ERROR_TYPES, (0.88, 0.03, 0.03, 0.03, 0.03)))
    analysis = dataclasses.replace(analysis, fractions=fractions)
    figures = []
    saved = sola.viz.show._save
    monkeypatch.setattr(sola.viz.show, "_save", lambda fig, out: (figures.append(fig), saved(fig, out))[1])
    assert error_figure(analysis, tmp_path / "errors.png").read_bytes()[:8] == PNG
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = figures[0]
    canvas = FigureCanvasAgg(figure)  # saved and closed: draw it again to measure its texts
    canvas.draw()
    renderer = canvas.get_renderer()
    pie = figure.axes[1]
    texts = [t for t in pie.texts if t.get_text()] + (pie.get_legend().get_texts() if pie.get_legend() else [])
    boxes = [t.get_window_extent(renderer) for t in texts]
    assert len(boxes) >= len(ERROR_TYPES)  # every error type is named somewhere
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), "two labels of the error pie overlap"
