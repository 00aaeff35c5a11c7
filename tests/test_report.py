"""`sola report`: the page of a train run and of a comparison, self-contained, with the numbers of its sources."""

from __future__ import annotations

import base64
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from sola.cli import main
from sola.core.config import load_config
from sola.core.errors import CheckpointError, ConfigError
from sola.core.runs import EVALUATION, PREDICTIONS, read_metrics, write_json
from sola.core.stats import format_mean_std
from sola.data.annotations import load_annotations
from sola.data.stores import open_store
from sola.evaluate.metrics.errors import ERROR_TYPES
from sola.experiments.compare import compare, predictions_path, result_path, verdict_lines
from sola.tal.config import load_tal_config
from sola.viz.report import report_kind, write_report

PNG = b"\x89PNG\r\n\x1a\n"
TINY_SOLA = {"adapter.hidden_dim": 16, "matching.projector_dim": 16, "fit.epochs": 2, "fit.batch_size": 16,
             "fit.checkpoint_every": 1}
TINY_TAL = {"train.epochs": 1, "train.warmup_epochs": 1, "model.embd_dim": 16, "model.head_dim": 16}


class Page(HTMLParser):
    """The parts of a report page the tests look at: image sources, tables by id (rows of cell text), sections."""

    def __init__(self, html: str):
        super().__init__()
        self.images: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.sections: list[str] = []
        self._table = self._row = self._cell = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        elif tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def check_self_contained(html: str) -> Page:
    """The page fetches nothing and every picture is an inlined PNG; returns the parsed page."""
    assert 'src="http' not in html and "<link" not in html and "<script" not in html
    assert "http://" not in html and "https://" not in html and "url(" not in html
    page = Page(html)
    assert page.images
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG)
    return page


def check_markdown_twin(written: dict) -> str:
    """The Markdown twin exists and every picture it links is a PNG file beside it."""
    text = written["markdown"].read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert links
    for link in links:
        assert (written["markdown"].parent / link).read_bytes().startswith(PNG)
    return text


@pytest.fixture(scope="module")
def train_run(synthetic_small, tmp_path_factory):
    """A 2-epoch fit of the 24-video synthetic store, with selection."""
    from sola.adapt.fit import fit_adapter
    from sola.evaluate.select import select_checkpoint

    store = open_store(synthetic_small / "features")
    run = tmp_path_factory.mktemp("report_train") / "run"
    fit_adapter(store, load_config(None, TINY_SOLA), run, progress=False, log=lambda s: None)
    select_checkpoint(run, store, load_annotations(synthetic_small / "annotations.json"), subset="training")
    return run


def fake_experiment(calls: list):
    """A stand-in for `run_experiment` that writes what the real one writes in `out_dir` (predictions,
    evaluation): the ground truth of the evaluation subset, jittered, plus background detections; the
    jitter grows with each call, so modes differ."""
    from sola.tal.experiment import evaluate_predictions

    def run(features, annotations, config, seed=0, out_dir=None, mode="baseline", **kwargs):
        calls.append(mode)
        rng = np.random.default_rng([seed, len(calls)])
        labels = sorted(annotations.labels())
        results = {}
        for video_id, video in annotations.subset(config.data.test_subset).items():
            found = []
            for seg in video.segments:
                shift = rng.normal(0, 0.5 * len(calls), 2)
                found.append({"segment": [seg.start + shift[0], seg.end + shift[1]], "label": seg.label,
                              "score": float(rng.uniform(0.3, 1.0))})
            for _ in range(5):
                start = float(rng.uniform(0, video.duration - 2))
                found.append({"segment": [start, start + 2.0], "label": str(rng.choice(labels)),
                              "score": float(rng.uniform(0.0, 0.5))})
            results[video_id] = found
        predictions = {"version": "VERSION 1.3", "results": results, "external_data": {"used": False}}
        metrics = evaluate_predictions(predictions, annotations, config.data.test_subset, config.test.tiou_thresholds)
        write_json(Path(out_dir) / PREDICTIONS, predictions)
        write_json(Path(out_dir) / EVALUATION, metrics.to_dict())
        return {"mAP": {f"{t:.2f}": float(v) for t, v in zip(metrics.tiou_thresholds, metrics.mAP)},
                "average_mAP": metrics.average_mAP, "seconds_per_epoch": 0.1, "epochs": 1, "scoring": "multi-class detection",
                "mode": mode, "seed": seed, "history": []}

    return run


def fake_compare(synthetic_small, out: Path, monkeypatch) -> dict:
    """A comparison of baseline vs sola over 2 seeds through `sola.experiments.compare.compare` with a fake head."""
    import sola.experiments.compare

    monkeypatch.setattr(sola.experiments.compare, "run_experiment", fake_experiment([]))
    store = open_store(synthetic_small / "features")
    return compare(store, load_annotations(synthetic_small / "annotations.json"),
                   load_tal_config("tal_synthetic_cpu", TINY_TAL), out, seeds=2,
                   adapted_store=open_store(synthetic_small / "features"),  # another store: its heads are trained
                   probe=False, progress=False, log=lambda s: None)


@pytest.fixture(scope="module")
def compare_dir(synthetic_small, tmp_path_factory):
    """A comparison directory (fake head, real files) shared by the report tests."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        out = tmp_path_factory.mktemp("report_compare") / "cmp"
        fake_compare(synthetic_small, out, monkeypatch)
    return out


def test_compare_keeps_predictions_per_class_ap_and_the_annotation_file(compare_dir, synthetic_small):
    table = json.loads((compare_dir / "compare.json").read_text())
    assert table["annotations"] == str((synthetic_small / "annotations.json").resolve())
    for mode in ("baseline", "sola"):
        for seed in (0, 1):
            result = json.loads(result_path(compare_dir, mode, seed).read_text())
            assert set(result["per_class"]) == {"class_00", "class_01", "class_02", "class_03"}
            predictions = json.loads(predictions_path(compare_dir, mode, seed).read_text())
            assert predictions["results"]
    assert not [p for p in (compare_dir / "results").iterdir() if p.name.startswith(".")]  # scratch runs removed


def test_train_run_report(train_run, tmp_path):
    assert report_kind(train_run) == "train"
    written = write_report(train_run, tmp_path / "fit.html")
    assert written["markdown"] == tmp_path / "fit.md" and written["images"] == tmp_path / "fit_files"
    page = check_self_contained(written["html"].read_text())
    assert page.sections == ["run", "config", "curves", "tsm", "selection"]
    assert len(page.images) == 4  # curves, health, TSM, selection
    records = read_metrics(train_run)
    epochs = page.tables["epochs"]
    assert epochs[0][:4] == ["epoch", "loss", "gate", "departure"] and len(epochs) == 1 + len(records)
    assert [row[1] for row in epochs[1:]] == [f"{r['loss']:.4f}" for r in records]
    selection = json.loads((train_run / "select.json").read_text())
    rows = {row[0]: row for row in page.tables["selection"][1:]}
    assert set(rows) == set(selection["rows"]) and rows[selection["best"]][1] == "✓"
    assert rows["identity"][2] == f"{selection['identity_value']:.3f}"
    html = written["html"].read_text()
    assert "adapter:" in html and "hidden_dim: 16" in html  # the config, as YAML
    markdown = check_markdown_twin(written)
    assert "## Checkpoint selection" in markdown and "```yaml" in markdown


def test_train_report_says_when_the_store_is_gone_and_selection_did_not_run(train_run, tmp_path):
    run = tmp_path / "moved"
    shutil.copytree(train_run, run)
    (run / "select.json").unlink()
    record = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**record, "features": str(tmp_path / "gone")}))
    written = write_report(run)
    assert written["html"] == run / "report.html"
    html = written["html"].read_text()
    page = check_self_contained(html)
    assert len(page.images) == 2 and "selection" not in page.tables  # the curves only
    assert "No TSM picture" in html and str(tmp_path / "gone") in html and "No selection ran" in html


def test_compare_report_has_the_tables_and_the_numbers_of_compare_json(compare_dir, tmp_path):
    assert report_kind(compare_dir) == "compare"
    written = write_report(compare_dir, tmp_path / "cmp.html")
    page = check_self_contained(written["html"].read_text())
    assert page.sections == ["verdict", "comparison", "map", "per-class", "errors", "timelines"]
    table = json.loads((compare_dir / "compare.json").read_text())
    assert [row[0] for row in page.tables["verdict"][1:]] == verdict_lines(table)
    assert page.tables["verdict"][1][0].startswith("avg mAP (sola vs baseline): ")
    rows = {row[0]: row for row in page.tables["map-table"][1:]}
    assert set(rows) == {"baseline", "sola"}
    for mode, row in table["rows"].items():
        average = {"mean": row["average_mAP_mean"], "std": row["average_mAP_std"], "n": len(row["seeds"])}
        assert format_mean_std(average, digits=2) in rows[mode]
        assert rows[mode][1] == format_mean_std({"mean": row["mAP_mean"]["0.30"], "std": row["mAP_std"]["0.30"],
                                                 "n": 2}, digits=2)
    header, *classes = page.tables["per-class-table"]
    assert header == ["class", "ground truth", "AP baseline", "AP sola", "sola - baseline"]
    runs = {mode: [json.loads(result_path(compare_dir, mode, s).read_text()) for s in (0, 1)] for mode in rows}
    for name, count, base, sola, difference in classes:
        means = {m: np.mean([r["per_class"][name]["average_AP"] for r in runs[m]]) for m in runs}
        assert base == f"{100 * means['baseline']:.2f}" and sola == f"{100 * means['sola']:.2f}"
        assert difference == f"{100 * (means['sola'] - means['baseline']):+.2f}"
        assert count == str(runs["baseline"][0]["per_class"][name]["num_ground_truth"])
    errors = page.tables["error-table"]
    assert [row[0] for row in errors[1:len(ERROR_TYPES) + 1]] == list(ERROR_TYPES)
    # per-class bars, one error figure per mode, 3 videos x 2 modes of timelines
    assert len(page.images) == 1 + 2 + 6
    check_markdown_twin(written)


def test_report_of_an_older_comparison_says_what_is_missing(compare_dir, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(compare_dir, old)
    table = json.loads((old / "compare.json").read_text())
    del table["annotations"]
    (old / "compare.json").write_text(json.dumps(table))
    for path in (old / "results").glob("*.predictions.json"):
        path.unlink()
    for path in (old / "results").glob("*.json"):
        result = json.loads(path.read_text())
        result.pop("per_class")
        path.write_text(json.dumps(result))
    written = write_report(old)
    html = written["html"].read_text()
    page = Page(html)
    assert "map-table" in page.tables and "per-class-table" not in page.tables and not page.images
    assert "No per-class AP for baseline seed 0" in html and "does not name its annotation file" in html
    assert "No predictions kept for" in html and "sola_seed0.predictions.json" in html


def test_report_of_a_comparison_without_torch(compare_dir, tmp_path):
    from tests.test_cli_light import assert_light, run_light

    out = tmp_path / "light.html"
    assert_light(run_light("report", compare_dir, "--out", out))
    assert "verdict" in out.read_text().lower()


def test_report_command_and_its_errors(compare_dir, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["report", str(compare_dir), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out and out.is_file()
    for bad in (tmp_path / "missing", tmp_path):  # no directory; a directory of neither kind
        assert main(["report", str(bad)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith("sola report: error:")
        assert "sola train" in err and "sola compare" in err
    assert main(["report", str(compare_dir), "--out", str(tmp_path / "page.txt")]) == 2
    assert ".html" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="neither"):
        write_report(tmp_path)
    with pytest.raises(ConfigError):
        write_report(compare_dir, tmp_path)


@pytest.mark.slow
def test_report_of_a_real_comparison(synthetic_small, tmp_path):
    store = open_store(synthetic_small / "features")
    out = tmp_path / "cmp"
    compare(store, load_annotations(synthetic_small / "annotations.json"),
            load_tal_config("tal_synthetic_cpu", TINY_TAL), out, seeds=1, sola_config=load_config(None, TINY_SOLA),
            probe=False, progress=False, log=lambda s: None, select=False)
    assert predictions_path(out, "sola", 0).is_file() and "per_class" in json.loads(
        result_path(out, "baseline", 0).read_text())
    page = check_self_contained(write_report(out)["html"].read_text())
    assert {"map-table", "per-class-table", "error-table"} <= set(page.tables)
    assert len(page.images) == 1 + 2 + 6


def test_train_report_draws_the_selected_adapter_and_says_which(train_run, tmp_path, monkeypatch):
    import sola.evaluate.tsm

    run = tmp_path / "run"
    shutil.copytree(train_run, run)
    drawn = []
    real = sola.evaluate.tsm.write_tsm_picture
    monkeypatch.setattr(sola.evaluate.tsm, "write_tsm_picture",
                        lambda *a, adapter=None, **k: (drawn.append(Path(adapter)), real(*a, adapter=adapter, **k))[1])
    best = json.loads((run / "select.json").read_text())["best"]
    html = write_report(run)["html"].read_text()
    assert drawn == [run / "best.safetensors"]
    assert "best.safetensors" in html and (best in html)
    (run / "best.safetensors").unlink()  # as before `sola select`: the fit's last adapter
    html = write_report(run)["html"].read_text()
    assert drawn[-1] == run / "adapter.safetensors" and "has not run" in html
