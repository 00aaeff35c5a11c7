"""Evaluation subcommands: eval-detection, eval-proposals, probe, select, tsm."""

from __future__ import annotations

import argparse
import json
import sys
import warnings

from sola.cli.common import add_store_arguments, store_from_args


def register(subparsers) -> None:
    """Add the evaluation subcommands to the `sola` parser."""
    p = subparsers.add_parser(
        "eval-detection",
        help="detection mAP at tIoU thresholds (official ActivityNet semantics)",
        description="Detection mAP of a prediction file against ground truth, equal to the official "
        "ActivityNet evaluator (Evaluation/eval_detection.py).",
    )
    _add_ground_truth_arguments(p)
    p.add_argument("predictions", help="predictions: ActivityNet JSON {'results': ...}, ActionFormer flat JSON/pickle, "
                   "or {video: {segments, scores, labels}}")
    p.add_argument("--tiou", default=None, help="thresholds: thumos14 (0.3:0.1:0.7), activitynet (0.5:0.05:0.95), "
                   "a list 0.3,0.5 or a range 0.3:0.1:0.7 (default: thumos14 for THUMOS ids, else activitynet)")
    p.add_argument("--per-class", action="store_true", help="also print the average AP of every class")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON (atomically)")
    p.set_defaults(func=run_eval_detection)

    p = subparsers.add_parser(
        "eval-proposals",
        help="proposal AR@AN and AUC (official ActivityNet semantics, as BSN/BMN report)",
        description="Average recall vs average number of proposals per video, and its AUC.",
    )
    _add_ground_truth_arguments(p)
    p.add_argument("proposals", help="proposals: ActivityNet JSON {'results': {video: [{score, segment}]}} or the "
                   "other prediction layouts (labels ignored)")
    p.add_argument("--max-proposals", type=float, default=100.0, help="AN of the last budget (BMN: 100; 0 = all)")
    p.add_argument("--tiou", default="activitynet", help="thresholds (default 0.5:0.05:0.95)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON (atomically)")
    p.set_defaults(func=run_eval_proposals)


def _add_ground_truth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ground_truth", metavar="GT", help="ground truth in any annotation format (ActivityNet JSON, "
                   "ActionFormer JSON, G-TAD/TSP CSV, BSN JSON)")
    p.add_argument("--subset", default=None, help="subset to evaluate (case-insensitive; default: the only one)")
    p.add_argument("--annotation-format", default=None, help="force the annotation format")
    p.add_argument("--metadata", default=None, help="metadata CSV for TSP/BSN annotations")


def _load_ground_truth(args):
    """(annotations of the chosen subset, Segments) from the CLI arguments."""
    from sola.annotations import load_annotations
    from sola.errors import PredictionError
    from sola.predictions import ground_truth_segments

    # Evaluate the ground truth exactly as written (the official code never clips segments).
    annotations = load_annotations(args.ground_truth, args.annotation_format, args.metadata, bad_segments="keep")
    subset = args.subset
    if subset is None:
        subsets = annotations.subsets()
        if len(subsets) > 1:
            present = ", ".join(f"{name} ({count} videos)" for name, count in subsets.items())
            raise PredictionError(f"{args.ground_truth} holds several subsets: {present}; pick one with --subset")
    chosen = annotations.subset(subset) if subset else annotations
    return chosen, ground_truth_segments(chosen)


def _label_names(annotations) -> dict[int, str]:
    return {index: name for name, index in annotations.label_index().items()}


def default_tiou_preset(video_ids, source: str) -> str:
    """"thumos14" when the ground truth looks like THUMOS14 (its file name or video ids), else "activitynet"."""
    ids = list(video_ids)
    thumos_ids = ids and all(v.startswith(("video_test_", "video_validation_")) for v in ids)
    return "thumos14" if thumos_ids or "thumos" in source.lower() else "activitynet"


def run_eval_detection(args) -> int:
    """`sola eval-detection`: print mAP per threshold; optionally write JSON."""
    from sola.atomic import atomic_write_text
    from sola.metrics import evaluate_detection, parse_tiou
    from sola.predictions import align_video_ids, read_predictions

    annotations, ground_truth = _load_ground_truth(args)
    thresholds = parse_tiou(args.tiou, default_tiou_preset(annotations.keys(), str(args.ground_truth)))
    predictions = read_predictions(args.predictions, label_names=_label_names(annotations))
    predictions = align_video_ids(predictions, annotations.keys())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_detection(ground_truth, predictions, thresholds)
    for warning in caught:
        print(f"sola eval-detection: warning: {warning.message}", file=sys.stderr)
    print(f"{len(ground_truth)} ground-truth segments in {len(annotations)} videos, {len(result.classes)} classes; "
          f"{len(predictions)} predictions")
    print("tIoU   mAP (%)")
    for threshold, value in zip(result.tiou_thresholds, result.mAP):
        print(f"{threshold:<6g} {100 * value:6.2f}")
    print(f"avg    {100 * result.average_mAP:6.2f}")
    if args.per_class:
        width = max(len(name) for name in result.classes)
        for k, name in enumerate(result.classes):
            print(f"  {name:<{width}}  {100 * result.ap[:, k].mean():6.2f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result.to_dict(), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def run_eval_proposals(args) -> int:
    """`sola eval-proposals`: print AR@AN and AUC; optionally write JSON."""
    from sola.atomic import atomic_write_text
    from sola.metrics import evaluate_proposals, parse_tiou
    from sola.predictions import align_video_ids, read_predictions

    annotations, ground_truth = _load_ground_truth(args)
    thresholds = parse_tiou(args.tiou)
    proposals = read_predictions(args.proposals, label_names=_label_names(annotations), require_labels=False)
    proposals = align_video_ids(proposals, annotations.keys())
    result = evaluate_proposals(ground_truth, proposals, args.max_proposals or None, thresholds)
    summary = result.to_dict()
    print(f"{len(ground_truth)} ground-truth segments in {len(annotations)} videos; {len(proposals)} proposals")
    for key, value in summary.items():
        if key.startswith("AR@"):
            print(f"{key:<7} {100 * value:6.2f}")
    print(f"AUC     {100 * result.auc:6.2f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0
