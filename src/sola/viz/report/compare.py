"""The report of a `sola compare` directory: the mAP table, per-class AP, error breakdown, timelines.

It reads what `sola.experiments.compare.compare` keeps: `compare.json` (the table, the annotation file and
subsets), per (mode, seed) `results/{mode}_seed{seed}.json` (with "per_class") and
`results/{mode}_seed{seed}.predictions.json`. A directory made before those were kept gets the
sections it can have and a note naming what is missing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sola.core.errors import CheckpointError, PredictionError, SolaError
from sola.core.runs import read_json
from sola.data.annotations import load_annotations
from sola.data.predictions import ground_truth_segments
from sola.evaluate.metrics import Segments
from sola.evaluate.metrics.errors import ERROR_TYPES, false_positive_analysis
from sola.experiments.compare_table import (TABLE, kept_original_line, predictions_path, result_path, table_cells,
                                            table_notes, verdict_lines)
from sola.tal.evaluation import AGNOSTIC_LABEL, prediction_segments
from sola.viz.plots import class_colors, timeline_figure
from sola.viz.report.document import Figure, Note, Report, Section, Table, number
from sola.viz.report.figures import difference_bars
from sola.viz.show import error_figure

REFERENCE = "baseline"  # the mode every other one is compared with, per class
BAR_CLASSES = 30  # classes drawn in the bar chart; with more, the largest gains and losses
TIMELINE_VIDEOS = 3
TIMELINE_DETECTIONS = (5, 30)  # per video: 3 x its ground-truth segments, within these bounds


def is_compare_dir(path: Path) -> bool:
    """Whether `path` is a `sola compare` output directory (it holds compare.json)."""
    return (path / TABLE).is_file()


def compare_report(compare_dir: str | Path, images: Path) -> Report:
    """The report of the comparison in `compare_dir`; figures are written to the folder `images`.

    Raises `CheckpointError` for an unreadable compare.json, `PredictionError` for a corrupt prediction file.
    """
    compare_dir = Path(compare_dir)
    table = read_json(compare_dir / TABLE)
    if not isinstance(table, dict) or not table.get("rows"):
        raise CheckpointError(f"{compare_dir / TABLE}: not a readable comparison table; rerun `sola compare`")
    report = Report(f"SoLa comparison: {compare_dir.name}", "compare", str(compare_dir))
    seeds = {mode: row["seeds"] for mode, row in table["rows"].items()}
    results = {mode: [read_json(result_path(compare_dir, mode, s), {}) for s in mode_seeds]
               for mode, mode_seeds in seeds.items()}
    kept = kept_original_line(table)
    if kept:  # first: what the sola row is
        report.section("kept", "The original features were kept").add(Note(kept))
    lines = verdict_lines(table)
    if lines:
        report.section("verdict", "Verdict").add(
            Table("verdict", ["verdict"], [[line] for line in lines], layout="facts"),
            Note("From the paired seeds of each mode and the baseline: the mean difference with its 95% t-interval; "
                 "\"helps\" or \"hurts\" only when the interval excludes 0."))
    _overview(report, compare_dir, table)
    header, rows = table_cells(table)
    report.section("map", "Detection mAP").add(
        Table("map-table", header, rows, "mAP in %, mean ± std over seeds (as compare.md)."),
        *[Note(note) for note in table_notes(table)])
    _per_class(report.section("per-class", "Per-class AP"), results, images)
    truth, durations, why = _ground_truth(table)
    predictions = _predictions(compare_dir, seeds)
    missing = [f"`{path.relative_to(compare_dir)}`" for mode, mode_seeds in seeds.items() for seed in mode_seeds
               if not (path := predictions_path(compare_dir, mode, seed)).is_file()]
    errors = report.section("errors", "Error analysis (DETAD false positives)")
    timelines = report.section("timelines", "Timelines")
    for section in (errors, timelines):
        if truth is None:
            section.add(Note(f"No ground truth to compare with: {why}.", warning=True))
        if missing:
            shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
            section.add(Note(f"No predictions kept for {shown} (results of a `sola compare` that did not keep them); "
                             "delete those results files and rerun `sola compare` with the same --out to get "
                             "them.", warning=True))
    chosen = {mode: seed for mode, seed in predictions.items() if seed is not None}
    repeats = _repeats(results, chosen)
    if repeats:  # the same heads as another mode's (its features were that mode's): drawn once
        for section in (errors, timelines):
            section.add(Note("Not drawn again: " + "; ".join(f"`{mode}` (its heads are `{same}`'s: the same features)"
                                                            for mode, same in repeats.items()) + "."))
        chosen = {mode: seed for mode, seed in chosen.items() if mode not in repeats}
    if truth is not None and chosen:
        loaded = {mode: _read(predictions_path(compare_dir, mode, seed)) for mode, seed in chosen.items()}
        truth = _as_scored(_scored_videos(truth, loaded, table), loaded)
        thresholds = [float(t) for t in next(iter(table["rows"].values()))["mAP_mean"]]
        _errors(errors, truth, loaded, chosen, thresholds, images)
        _timelines(timelines, truth, durations, loaded, chosen, table, images)
    return report


def _repeats(results: dict[str, list[dict]], chosen: dict[str, int]) -> dict[str, str]:
    """Modes whose drawn seed reused another mode's head (`reused_from` in its result) -> that mode, when drawn."""
    found = {}
    for mode, seed in chosen.items():
        same = next((r.get("reused_from") for r in results.get(mode, []) if r.get("seed") == seed), None)
        if same in chosen and same != mode:
            found[mode] = same
    return found


def _overview(report: Report, compare_dir: Path, table: dict) -> None:
    first = next(iter(table["rows"].values()))
    rows = [["directory", str(compare_dir.resolve())], ["modes", ", ".join(table["rows"])],
            ["seeds", ", ".join(str(s) for s in first["seeds"])],
            ["head trained on", str(table.get("train_subset"))],
            ["evaluated on", (table.get("coverage") or {}).get("line") or str(table.get("test_subset"))],
            ["annotations", str(table.get("annotations") or "—")]]
    used = table.get("sola_adapter")
    if used:
        rows.append(["SoLa features", str(used.get("message") or used.get("source"))])
    report.section("comparison", "Comparison").add(Table("comparison", ["", "value"], rows, layout="facts"))


def _per_class(section: Section, results: dict[str, list[dict]], images: Path) -> None:
    """AP per class, mean over seeds, per mode; the differences to the reference mode as a chart and table."""
    lacking = [f"{mode} seed {r.get('seed', '?')}" for mode, runs in results.items() for r in runs
               if "per_class" not in r]
    if lacking:
        section.add(Note(f"No per-class AP for {', '.join(lacking)} (results of a `sola compare` that did not keep "
                         "it); delete those results files and rerun `sola compare` with the same --out.",
                         warning=True))
    means = {mode: _class_means(runs) for mode, runs in results.items() if all("per_class" in r for r in runs)}
    if not means:
        return
    classes = sorted(set().union(*[set(m) for m in means.values()]))
    modes = list(means)
    others = [m for m in modes if m != REFERENCE] if REFERENCE in means else []
    difference = {m: np.array([means[m].get(c, math.nan) - means[REFERENCE].get(c, math.nan) for c in classes])
                  for m in others}
    ground_truth = _class_counts(results)
    order = list(range(len(classes)))
    if others:
        key = difference[others[0]]
        order.sort(key=lambda i: -np.nan_to_num(key[i], nan=-np.inf))
        drawn = order if len(order) <= BAR_CLASSES else order[: BAR_CLASSES // 2] + order[-BAR_CLASSES // 2:]
        note = "" if len(drawn) == len(order) else (f" The {BAR_CLASSES // 2} largest gains and losses of "
                                                     f"{len(order)} classes.")
        section.add(Figure(difference_bars(
            images / "per_class_ap.png", [classes[i] for i in drawn],
            {m: 100 * difference[m][drawn] for m in others}, f"AP difference to {REFERENCE} (points)",
            f"per-class average AP: mode - {REFERENCE}, mean over seeds"),
            f"Average AP over the tIoU thresholds per class, each mode minus `{REFERENCE}` (mean over seeds), sorted "
            f"by the difference of `{others[0]}`.{note}"))
    header = ["class", "ground truth", *[f"AP {m}" for m in modes], *[f"{m} - {REFERENCE}" for m in others]]
    rows = [[classes[i], str(ground_truth.get(classes[i], "—")),
             *[number(means[m].get(classes[i]), 2, 100) for m in modes],
             *[number(difference[m][i], 2, 100, signed=True) for m in others]] for i in order]
    section.add(Table("per-class-table", header, rows,
                      "Average AP over the tIoU thresholds in %, mean over seeds; ground truth: instances in the "
                      "evaluation subset."))


def _class_means(runs: list[dict]) -> dict[str, float]:
    """Class -> average AP (over tIoU thresholds) averaged over the runs (seeds)."""
    names = sorted(set().union(*[set(r["per_class"]) for r in runs]))
    return {name: float(np.mean([r["per_class"].get(name, {}).get("average_AP", 0.0) for r in runs])) for name in names}


def _class_counts(results: dict[str, list[dict]]) -> dict[str, int]:
    for runs in results.values():
        for run in runs:
            if "per_class" in run:
                return {name: int(row.get("num_ground_truth", 0)) for name, row in run["per_class"].items()}
    return {}


def _ground_truth(table: dict) -> tuple[Segments | None, dict[str, float], str]:
    """`(ground truth, duration per video, "")` of the evaluation subset, from the annotation file
    `compare.json` names, or `(None, {}, why not)`."""
    path = table.get("annotations")
    if not path:
        return None, {}, "`compare.json` does not name its annotation file (a comparison made before it did)"
    try:
        # as `sola compare` read them (comparisons made before the policy was recorded read them clipped)
        annotations = load_annotations(path, bad_segments=table.get("bad_segments", "clip"))
        truth = ground_truth_segments(annotations, table["test_subset"])
    except (SolaError, OSError) as exc:
        return None, {}, f"the annotation file cannot be read ({exc})"
    return truth, {v: video.duration for v, video in annotations.subset(table["test_subset"]).items()}, ""


def _predictions(compare_dir: Path, seeds: dict[str, list[int]]) -> dict[str, int | None]:
    """Per mode, the seed whose predictions are drawn: the first seed shared by all modes that has them."""
    kept = {mode: [s for s in mode_seeds if predictions_path(compare_dir, mode, s).is_file()]
            for mode, mode_seeds in seeds.items()}
    shared = sorted(set.intersection(*[set(s) for s in kept.values()])) if kept else []
    return {mode: (shared[0] if shared else (found[0] if found else None)) for mode, found in kept.items()}


def _read(path: Path) -> dict:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise PredictionError(f"{path}: not a readable prediction file; delete it and its results file, then rerun "
                              "`sola compare` with the same --out")
    return data


def _scored_videos(truth: Segments, loaded: dict[str, dict], table: dict) -> Segments:
    """The ground truth of the videos the head was scored on (those it predicted: the ones with features)."""
    if not (table.get("coverage") or {}).get("scored_on_covered"):
        return truth  # a comparison made before heads were scored on their videos alone
    predicted = set().union(*[set(data["results"]) for data in loaded.values()])
    return truth.select(np.isin(truth.video, list(predicted)))


def _as_scored(truth: Segments, loaded: dict[str, dict]) -> Segments:
    """The ground truth as the head was scored: every label "action" for a class-agnostic head's proposals."""
    labels = {p["label"] for data in loaded.values() for preds in data["results"].values() for p in preds}
    if labels == {AGNOSTIC_LABEL} and AGNOSTIC_LABEL not in set(truth.label.tolist()):
        return Segments(truth.video, truth.start, truth.end, np.full(len(truth.video), AGNOSTIC_LABEL), None)
    return truth


def _errors(section: Section, truth: Segments, loaded: dict[str, dict], seeds: dict[str, int],
            thresholds: list[float], images: Path) -> None:
    """DETAD's false-positive breakdown per mode (one seed each): a figure per mode and one table."""
    analyses = {}
    for mode, data in loaded.items():
        analyses[mode] = false_positive_analysis(truth, prediction_segments(data, f"{mode} predictions"),
                                                 tiou_thresholds=thresholds)
    section.add(Note("Each mode's top-10G predictions per class (G: its ground-truth instances), seed "
                     f"{', '.join(f'{seeds[m]} ({m})' for m in loaded)}: the share of each kind of false positive "
                     "(mean over the tIoU thresholds) and the average-mAP gained by removing it."))
    header = ["error type", *[f"{m} share" for m in analyses], *[f"{m} mAP gain" for m in analyses]]
    rows = [[name, *[number(a.fractions.get(name), 1, 100) for a in analyses.values()],
             *[number(a.map_gain.get(name), 2, 100, signed=True) for a in analyses.values()]] for name in ERROR_TYPES]
    rows.append(["average mAP (top-10G)", *["" for _ in analyses], *[number(a.average_mAP, 2, 100) for a in analyses.values()]])
    section.add(Table("error-table", header, rows, "Shares in % of the analysed false positives; gains in mAP points."))
    for mode, analysis in analyses.items():
        slug = mode.replace("+", "_")
        section.add(Figure(error_figure(analysis, images / f"errors_{slug}.png"),
                           f"False-positive breakdown of `{mode}` (seed {seeds[mode]})."))


def _timelines(section: Section, truth: Segments, durations: dict[str, float], loaded: dict[str, dict],
               seeds: dict[str, int], table: dict, images: Path) -> None:
    """Timelines of a few evaluation videos: each mode's detections (one seed) above the ground truth."""
    videos = list(dict.fromkeys(truth.video.tolist()))[:TIMELINE_VIDEOS]
    labels = set(truth.label.tolist()) | {p["label"] for data in loaded.values()
                                          for v in videos for p in data["results"].get(v, [])}
    colors = class_colors(sorted(labels))
    section.add(Note(f"{len(videos)} videos of `{table['test_subset']}` (the first by id with ground truth): the "
                     "best-scored detections of each mode in lanes above, the ground truth (hatched) beneath."))
    for index, video in enumerate(videos):
        mine = truth.video == video
        gt = list(zip(truth.start[mine].tolist(), truth.end[mine].tolist(), truth.label[mine].tolist()))
        count = int(np.clip(3 * len(gt), *TIMELINE_DETECTIONS))
        duration = durations.get(video, math.nan)
        for mode, data in loaded.items():
            found = sorted(data["results"].get(video, []), key=lambda p: -p["score"])[:count]
            detections = [(p["segment"][0], p["segment"][1], p["label"], p["score"]) for p in found]
            ends = [d[1] for d in detections] + [g[1] for g in gt]
            length = duration if math.isfinite(duration) else max(ends, default=1.0)
            slug = mode.replace("+", "_")
            path = timeline_figure(images / f"timeline_{index}_{slug}.png", length, detections, gt,
                                   title=f"{video}: {mode}, seed {seeds[mode]}", colors=colors)
            section.add(Figure(path, f"`{video}`, `{mode}` (seed {seeds[mode]}): its {len(detections)} best-scored "
                                     f"detections and {len(gt)} ground-truth segments."))
