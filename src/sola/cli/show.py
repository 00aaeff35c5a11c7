"""The `sola show` subcommand: figures, numbers and DETAD's false-positive analysis of a prediction file."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from sola.cli.common import (add_annotation_arguments, add_command, add_covered_only_argument, annotations_from_args,
                             check_output_dir, integer, number)
from sola.cli.evaluate import default_tiou_preset
from sola.core.errors import PredictionError
from sola.core.paths import check_outputs
from sola.data.predictions import (align_video_ids, distinct, ground_truth_segments, prediction_notes,
                                   read_predictions)
from sola.evaluate.metrics import parse_tiou
from sola.evaluate.metrics.coverage import cover


def register(subparsers) -> None:
    """Add `sola show` to the `sola` parser."""
    p = add_command(subparsers, "show", run_show, threads=False)
    p.add_argument("predictions", metavar="PREDICTIONS", help="predictions: ActivityNet JSON {'results': ...}, "
                   "ActionFormer flat JSON/pickle, or {video: {segments, scores, labels}}")
    add_annotation_arguments(p)
    p.add_argument("--subset", default=None, help="subset to show (case-insensitive; default: the only one)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: show/ beside the predictions)")
    p.add_argument("--tiou", default=None, help="thresholds: thumos14 (0.3:0.1:0.7), activitynet (0.5:0.05:0.95), "
                   "a list 0.3,0.5 or a range 0.3:0.1:0.7 (default: thumos14 for THUMOS ids, else activitynet)")
    p.add_argument("--videos", default=None, metavar="A,B", help="draw the timelines of these videos (comma-separated "
                   "ids) instead of the worst ones")
    p.add_argument("--worst", type=integer(0), default=5, metavar="N",
                   help="timelines of the N worst videos: lowest recall at tIoU 0.5, then most false positives "
                   "(default 5)")
    p.add_argument("--min-score", type=number(), default=0.0, metavar="X",
                   help="timelines and the worst-video ranking use only predictions scoring at least X (default 0)")
    p.add_argument("--top-k", type=integer(1), default=10, metavar="K",
                   help="the false-positive analysis covers each class's top K*G predictions, G its ground-truth "
                   "instances (DETAD: 10)")
    add_covered_only_argument(p)


def run_show(args) -> int:
    """figures and DETAD's false-positive analysis of a prediction file

    Writes into --out: AP per class, mAP against tIoU, precision-recall at tIoU 0.5, DETAD's false-positive
    breakdown (double detection, wrong label, localization, confusion, background) with the average-mAP gain of
    removing each error type, timelines of the worst (or --videos) videos, show.json (the numbers) and show.md
    (the error table).
    """
    from sola.viz.show import FIGURES, TIMELINES, check_videos, format_error_table, show_predictions

    out = Path(args.out) if args.out else Path(args.predictions).parent / "show"
    check_outputs({"--out": [out, *(out / name for name in FIGURES.values()), out / "show.json", out / "show.md",
                             out / TIMELINES]},
                  {"the predictions PREDICTIONS": args.predictions, "--annotations": args.annotations,
                   "--metadata": args.metadata})
    annotations = annotations_from_args(args)
    annotations = _chosen_subset(annotations, args.subset, args.annotations)
    ground_truth = ground_truth_segments(annotations)  # raises if the subset holds no segments
    thresholds = parse_tiou(args.tiou, default_tiou_preset(annotations.keys(), str(args.annotations)))
    check_output_dir(out)

    names = {index: name for name, index in annotations.label_index().items()}
    predictions = read_predictions(args.predictions, label_names=names)
    predictions = align_video_ids(predictions, annotations.keys())
    if not np.isin(predictions.video, np.asarray(list(annotations.keys()), dtype=str)).any():
        example = f" (e.g. {str(predictions.video[0])!r})" if len(predictions) else ""
        raise PredictionError(f"{args.predictions}: none of its {len(np.unique(predictions.video))} video(s){example} "
                              f"is annotated in {args.annotations}{_subset_words(args.subset)}; "
                              "check --subset and the video ids")
    videos = None
    if args.videos:
        videos = [_annotated_id(annotations, v.strip()) for v in args.videos.split(",") if v.strip()]
        videos = check_videos(videos, ground_truth, predictions)
    subset = args.subset or next(iter(annotations.subsets()), None)
    ground_truth, coverage = cover(ground_truth, distinct(predictions.video), subset, args.covered_only)
    durations = {video_id: entry.duration for video_id, entry in annotations.items()}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shown = show_predictions(predictions, ground_truth, out, thresholds, videos=videos, worst=args.worst,
                                 min_score=args.min_score, durations=durations, top_k=args.top_k, coverage=coverage)
    for note in prediction_notes(predictions, annotations.keys(), "are scored as false positives"):  # after: a
        print(f"sola show: note: {note}", file=sys.stderr)  # refusal stays one line
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"sola show: warning: {message}", file=sys.stderr)

    if shown["analysis"].top_k < args.top_k:
        print(f"sola show: note: --top-k {args.top_k} reaches past every prediction; the analysis stops at "
              f"{shown['analysis'].top_k}G, which holds them all", file=sys.stderr)
    result = shown["detection"]
    print(f"{len(ground_truth)} ground-truth segments in {len(annotations)} videos, {len(result.classes)} classes; "
          f"{len(predictions)} predictions; average mAP {100 * result.average_mAP:.2f}")
    print(coverage.line())
    print(format_error_table(shown["analysis"]))
    print(f"figures in {out}/: " + ", ".join(path.name for path in shown["figures"].values()))
    if shown["timelines"]:
        print(f"timelines in {out}/timelines/: " + ", ".join(shown["timelines"]))
    print(f"wrote {shown['json']} and {shown['markdown']}")
    return 0


def _chosen_subset(annotations, subset: str | None, source):
    """The annotations of `subset` (or the only one); raises `PredictionError` naming the subsets present."""
    subsets = annotations.subsets()
    present = ", ".join(f"{name} ({count} videos)" for name, count in subsets.items())
    if subset is None:
        if len(subsets) > 1:
            raise PredictionError(f"{source} holds several subsets: {present}; pick one with --subset")
        return annotations
    chosen = annotations.subset(subset)
    if not len(chosen):
        raise PredictionError(f"{source} has no subset {subset!r}; subsets present: {present}")
    return chosen


def _annotated_id(annotations, video: str) -> str:
    """The annotations' id of `video` (also found as v_<id> <-> <id>); unknown ids stay as given."""
    entry = annotations.get(video)
    return entry.video_id if entry is not None else video


def _subset_words(subset: str | None) -> str:
    return f" (subset {subset!r})" if subset else ""
