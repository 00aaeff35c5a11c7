"""The report of a `sola tal train` run: what the head was trained on, its losses and learning rate per epoch,
its mAP where the run was scored, and its config."""

from __future__ import annotations

from pathlib import Path

from sola.core.runs import CLASSES, CONFIG, EVALUATION, read_json, read_metrics
from sola.viz.report.document import Code, Figure, Note, Report, Table, number
from sola.viz.report.figures import Panel, line_panels

LOSSES = (("loss", "total"), ("cls_loss", "classification"), ("reg_loss", "regression"), ("aux_loss", "auxiliary"))


def head_report(run_dir: str | Path, images: Path) -> Report:
    """The report of the TAL head run in `run_dir`; figures are written to the folder `images`."""
    run_dir = Path(run_dir)
    report = Report(f"TAL head: {run_dir.name}", "head", str(run_dir))
    records = read_metrics(run_dir)
    _overview(report, run_dir, records)
    _curves(report, records, images)
    _scores(report, run_dir)
    report.section("config", "Config").add(
        Note(f"`{CONFIG}` of the run: the full head config it was trained with (train.epochs does not count the "
             "train.warmup_epochs run before them)."),
        Code((run_dir / CONFIG).read_text(), "yaml"))
    return report


def _overview(report: Report, run_dir: Path, records: list[dict]) -> None:
    section = report.section("run", "Run")
    classes = read_json(run_dir / CLASSES, [])
    features = read_json(run_dir / "features.json", {}) or {}
    rows = [["run directory", str(run_dir.resolve())],
            ["classes", f"{len(classes)}: {', '.join(map(str, classes[:8]))}{', ...' if len(classes) > 8 else ''}"],
            ["features", ", ".join(f"{key} {value}" for key, value in features.items()
                                   if key in ("encoder", "dim", "window", "stride", "adapter_sha256")) or "—"],
            ["epochs run", str(len(records))]]
    if records:
        rows += [["loss (first → last epoch)", f"{number(records[0].get('loss'))} → {number(records[-1].get('loss'))}"],
                 ["seconds", number(sum(float(r.get("seconds", 0.0)) for r in records), 1)]]
    section.add(Table("run-summary", ["", "value"], rows, layout="facts"))
    if not records:
        section.add(Note(f"No finished epoch: `{run_dir / 'metrics.jsonl'}` is empty.", warning=True))


def _curves(report: Report, records: list[dict], images: Path) -> None:
    section = report.section("curves", "Training curves")
    if not records:
        section.add(Note("No epochs to draw.", warning=True))
        return
    epochs = [r["epoch"] for r in records]
    losses = {name: [float(r.get(key, float("nan"))) for r in records] for key, name in LOSSES
              if any(r.get(key) for r in records)}
    section.add(Figure(line_panels(images / "head_curves.png", epochs, [
        Panel("losses (mean per step)", losses),
        Panel("learning rate (end of epoch)", {"lr": [float(r.get("lr", float("nan"))) for r in records]}),
    ]), "Per epoch: the head's mean losses over its steps and the learning rate it ended the epoch with "
        "(linear warm-up, then cosine decay)."))


def _scores(report: Report, run_dir: Path) -> None:
    section = report.section("map", "Detection mAP")
    evaluation = read_json(run_dir / EVALUATION, None)
    if not evaluation:
        section.add(Note("`sola tal train` does not score the head per epoch; `sola tal infer` then `sola tal eval` "
                         "give its detection mAP on the evaluation subset.", warning=True))
        return
    header = ["tIoU", *[f"{t:g}" for t in evaluation["tiou_thresholds"]], "avg"]
    cells = ["mAP (%)", *[f"{100 * v:.2f}" for v in evaluation["mAP"]], f"{100 * evaluation['average_mAP']:.2f}"]
    coverage = (evaluation.get("coverage") or {}).get("line")
    section.add(Table("map-table", header, [cells], f"Scoring: {evaluation.get('scoring', '—')}"
                      + (f"; {coverage}." if coverage else ".")))
