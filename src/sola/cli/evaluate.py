"""Evaluation subcommands: eval-detection, eval-proposals, probe, select, tsm.

`eval-detection` and `eval-proposals` need no tensors: the modules that import torch (probe, select,
tsm, adapter) are imported inside the commands that use them.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from sola.cli.common import (NON_NEGATIVE, POSITIVE, SEED, add_annotation_arguments, add_command, add_config_arguments,
                             add_covered_only_argument, add_store_arguments, annotations_from_args, config_overrides,
                             cyclic_gc_paused, integer, number, store_from_args, store_options)
from sola.core.atomic import atomic_write_text, json_text
from sola.core.devices import resolve_device
from sola.core.errors import AnnotationError, ConfigError, PredictionError, SolaError
from sola.core.paths import check_outputs
from sola.core.runs import BEST, SELECTION, fitted_store
from sola.data.annotations import load_annotations
from sola.data.predictions import (align_video_ids, distinct, ground_truth_segments, prediction_notes,
                                   read_predictions)
from sola.data.stores import open_store
from sola.evaluate.metrics import evaluate_detection, evaluate_proposals, parse_tiou
from sola.evaluate.metrics.coverage import cover
from sola.evaluate.probe.config import SELECTABLE, ProbeConfig

# Named flags of `sola probe` and `sola select`: shortcuts for single keys of `sola.evaluate.probe.ProbeConfig`.
PROBE_SHORTCUTS = [
    ("--boundary-k", "data.boundary_k", {"type": integer(1), "help": "boundary accuracy counts snippets within +-k "
                                         "of a transition (default 2)"}),
    ("--feat-stride", "data.feat_stride", {"type": POSITIVE,
                                           "help": "frames between snippets (else from annotations)"}),
    ("--num-frames", "data.num_frames", {"type": NON_NEGATIVE, "help": "frames per snippet"}),
    ("--fps", "data.fps", {"type": POSITIVE, "help": "frames per second (else from annotations)"}),
    ("--seed", "data.seed", {"type": SEED, "help": "probe seed (and, for select, the held-out split's)"}),
    ("--max-snippets", "data.max_snippets", {"type": integer(0, 10**15), "help": "cap on each split's snippets, a seeded "
                                             "uniform draw beyond it (default 400000; 0: none)"}),
    ("--max-bytes", "data.max_bytes", {"type": integer(0, 10**15), "help": "cap on each split's float32 matrix in bytes, "
                                       "as snippets of the store's width (default 750000000: 91,552 snippets at "
                                       "2048-d, both splits ~1.5 GB; 0: none)"}),
]
SELECT_SHORTCUTS = [
    ("--holdout", "data.holdout", {"type": number(0.0, 1.0, above=True), "help": "share of its videos held out to "
                                   "measure the probe (default 0.25; the probe trains on the rest)"}),
    ("--min-gain", "select.min_gain", {"type": number(), "help": "a checkpoint must beat the identity by more than "
                                       "this on --metric (default 0: any strict gain)"}),
    ("--metric", "select.metric", {"help": f"column that picks the best checkpoint: {', '.join(SELECTABLE)} "
                                   "(default lbfgs_balanced_accuracy; sgd_accuracy is the reference protocol's)"}),
    ("--criterion", "select.criterion", {"choices": ["probe", "head"], "help": "judge candidates by the linear "
                                         "probe (default, the reference's rule) or by a short proxy of the TAL head "
                                         "(--head-config) on held-out videos, paired seeds"}),
    ("--head-epochs", "select.head_epochs", {"type": integer(0), "help": "head criterion: the proxy head's epochs "
                                             "in all (default 6; 0: the head config's schedule)"}),
    ("--seeds", "select.seeds", {"type": integer(2, 1000), "help": "head criterion: proxy-head seeds (default 3)"}),
]
PROBE_CONFIG = "probe config (sections data, sgd, lbfgs, select) over the reference defaults"


def register(subparsers) -> None:
    """Add the evaluation subcommands to the `sola` parser."""
    p = add_command(subparsers, "eval-detection", run_eval_detection, threads=False)
    _add_ground_truth_arguments(p)
    p.add_argument("predictions", metavar="PRED", help="predictions: ActivityNet JSON {'results': ...}, ActionFormer flat JSON/pickle, "
                   "or {video: {segments, scores, labels}}")
    p.add_argument("--tiou", default=None, help="thresholds: thumos14 (0.3:0.1:0.7), activitynet (0.5:0.05:0.95), "
                   "a list 0.3,0.5 or a range 0.3:0.1:0.7 (default: thumos14 for THUMOS ids, else activitynet)")
    p.add_argument("--per-class", action="store_true", help="also print the average AP of every class")
    add_covered_only_argument(p)
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON (atomically)")

    p = add_command(subparsers, "eval-proposals", run_eval_proposals, threads=False)
    _add_ground_truth_arguments(p)
    p.add_argument("proposals", metavar="PROPOSALS", help="proposals: ActivityNet JSON {'results': {video: [{score, segment}]}} or the "
                   "other prediction layouts (labels ignored)")
    p.add_argument("--max-proposals", type=number(0.0, 1e6), default=100.0, help="AN of the last budget (BMN: 100; 0 = all)")
    p.add_argument("--tiou", default="activitynet", help="thresholds (default 0.5:0.05:0.95)")
    add_covered_only_argument(p)
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON (atomically)")

    p = add_command(subparsers, "probe", run_probe)
    add_store_arguments(p)
    _add_probe_arguments(p)
    p.add_argument("--adapter", default=None, help="adapter .safetensors or run directory: adds the SoLa row")
    p.add_argument("--adapted", default=None, metavar="SOLA_FEATURES", help="or: a store already transformed "
                   "by `sola transform` (same layout options): adds the SoLa row without adapter work")
    p.add_argument("--json", default=None, metavar="OUT", help="write the table as JSON (atomically)")

    p = add_command(subparsers, "select", run_select)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a `sola train` run directory")
    p.add_argument("--features", default=None,
                   help="the feature store to probe (default: the store the run was fitted on, from RUN_DIR/run.json)")
    p.add_argument("--layout", default=None, help="force the feature layout instead of detecting it")
    p.add_argument("--prefix", default=None, help="file-name prefix before the video id (e.g. v_)")
    p.add_argument("--suffix", default=None, help="file-name suffix after the video id (before the extension)")
    p.add_argument("--key", default=None, help="array/dataset name inside each file (npz, pt, pickle, hdf5 groups)")
    add_annotation_arguments(p)
    p.add_argument("--subset", default=None, help="the subset to select on, the one the TAL head trains on "
                   "(default: training, or validation when there is none, as for THUMOS14); never the evaluation subset")
    p.add_argument("--heldout-subset", default=None, metavar="SUBSET",
                   help="measure the probe on this subset instead of a held-out part of --subset "
                   "(e.g. holdout for `sola splice` data, whose training videos share clips)")
    p.add_argument("--head-config", default=None, metavar="TAL_CONFIG", help="head criterion: the TAL head "
                   "config whose proxy judges (a YAML file or a shipped name, e.g. thumos14_i3d; default: the "
                   "THUMOS14 values); its data.test_subset is never read")
    _add_probe_config_arguments(p, "data.holdout=0.5", SELECT_SHORTCUTS)

    p = add_command(subparsers, "tsm", run_tsm)
    add_store_arguments(p)
    p.add_argument("--video", required=True, help="video id in the store")
    p.add_argument("--adapter", default=None, help="adapter .safetensors or run directory: adds the SoLa panel")
    add_annotation_arguments(p, required=False)  # draws the ground-truth segments
    p.add_argument("--feat-stride", type=POSITIVE, default=None, help="frames between snippets (else from annotations)")
    p.add_argument("--num-frames", type=NON_NEGATIVE, default=None, help="frames per snippet")
    p.add_argument("--fps", type=POSITIVE, default=None, help="frames per second (else from annotations)")
    p.add_argument("--out", required=True, help="PNG file to write")


def _add_probe_arguments(p: argparse.ArgumentParser) -> None:
    add_annotation_arguments(p)
    p.add_argument("--train-subset", default=None, help="subset the probe trains on (default: training, "
                   "or validation when there is no training subset, as for THUMOS14)")
    p.add_argument("--val-subset", default=None, help="subset it is measured on (default: validation, or test)")
    _add_probe_config_arguments(p, "sgd.epochs=32")


def _add_probe_config_arguments(p: argparse.ArgumentParser, example: str, extra=()) -> None:
    """--config/--set of a `ProbeConfig` with the grid and seed flags (and `extra`) as shortcuts, --device, --quiet."""
    add_config_arguments(p, PROBE_CONFIG, example, PROBE_SHORTCUTS + list(extra))
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda when present)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_ground_truth_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("ground_truth", metavar="GT", help="ground truth in any annotation format (ActivityNet JSON, "
                   "ActionFormer JSON, G-TAD/TSP CSV, BSN JSON)")
    p.add_argument("--subset", default=None, help="subset to evaluate (case-insensitive; default: the only one)")
    p.add_argument("--annotation-format", default=None, help="force the annotation format")
    p.add_argument("--metadata", default=None, help="metadata CSV for TSP/BSN annotations")


def _load_ground_truth(args):
    """(annotations of the chosen subset, Segments) from the CLI arguments."""
    # Evaluate the ground truth exactly as written (the official code never clips segments).
    try:
        annotations = load_annotations(args.ground_truth, args.annotation_format, args.metadata, bad_segments="keep")
    except AnnotationError:
        _refuse_swapped(args)
        raise
    subset = args.subset
    if subset is None:
        subsets = annotations.subsets()
        if len(subsets) > 1:
            present = ", ".join(f"{name} ({count} videos)" for name, count in subsets.items())
            raise PredictionError(f"{args.ground_truth} holds several subsets: {present}; pick one with --subset")
    segments = ground_truth_segments(annotations, subset)  # raises, listing the subsets, if empty
    return (annotations.subset(subset) if subset else annotations), segments


def _refuse_swapped(args) -> None:
    """Raise `PredictionError` when GT reads as predictions and the predictions as annotations (swapped files)."""
    predictions = getattr(args, "predictions", None) or getattr(args, "proposals", None)
    try:
        read_predictions(args.ground_truth, require_labels=False)
        load_annotations(predictions)
    except (SolaError, OSError):
        return
    raise PredictionError(f"{args.ground_truth} reads as predictions and {predictions} as ground truth: the two "
                          "files look swapped; give the ground truth first (GT PRED)")


def _subset_name(args, annotations) -> str | None:
    """The subset scored: --subset, else the only one of the file."""
    return args.subset or next(iter(annotations.subsets()), None)


def _ground_truth_inputs(args, name: str, predictions) -> dict:
    """The inputs of `eval-detection` and `eval-proposals`, for `check_outputs`."""
    return {"the ground truth GT": args.ground_truth, name: predictions, "--metadata": args.metadata}


def _label_names(annotations) -> dict[int, str]:
    return {index: name for name, index in annotations.label_index().items()}


def default_tiou_preset(video_ids, source: str) -> str:
    """"thumos14" when the ground truth looks like THUMOS14 (its file name or video ids), else "activitynet"."""
    ids = list(video_ids)
    thumos_ids = ids and all(v.startswith(("video_test_", "video_validation_")) for v in ids)
    return "thumos14" if thumos_ids or "thumos" in source.lower() else "activitynet"


def run_eval_detection(args) -> int:
    """detection mAP at tIoU thresholds (official ActivityNet semantics)

    Detection mAP of a prediction file against ground truth, equal to the official ActivityNet evaluator
    (Evaluation/eval_detection.py).
    """
    with cyclic_gc_paused():
        return _eval_detection(args)


def _eval_detection(args) -> int:
    check_outputs({"--json": args.json}, _ground_truth_inputs(args, "the predictions PRED", args.predictions))
    annotations, ground_truth = _load_ground_truth(args)
    thresholds = parse_tiou(args.tiou, default_tiou_preset(annotations.keys(), str(args.ground_truth)))
    predictions = read_predictions(args.predictions, label_names=_label_names(annotations))
    predictions = align_video_ids(predictions, annotations.keys())
    ground_truth, coverage = cover(ground_truth, distinct(predictions.video), _subset_name(args, annotations),
                                   args.covered_only)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_detection(ground_truth, predictions, thresholds)
    result.coverage = coverage
    for note in prediction_notes(predictions, annotations.keys(), "are scored as false positives"):  # after: a
        print(f"sola eval-detection: note: {note}", file=sys.stderr)  # refusal stays one line
    for warning in caught:
        print(f"sola eval-detection: warning: {warning.message}", file=sys.stderr)
    print(f"{len(ground_truth)} ground-truth segments in {len(annotations)} videos, {len(result.classes)} classes; "
          f"{len(predictions)} predictions")
    print("tIoU   mAP (%)")
    for threshold, value in zip(result.tiou_thresholds, result.mAP):
        print(f"{threshold:<6g} {100 * value:6.2f}")
    print(f"avg    {100 * result.average_mAP:6.2f}")
    print(coverage.line())
    if args.per_class:
        width = max(len(name) for name in result.classes)
        for k, name in enumerate(result.classes):
            print(f"  {name:<{width}}  {100 * result.ap[:, k].mean():6.2f}")
    if args.json:
        atomic_write_text(args.json, json_text(result.to_dict(), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def run_eval_proposals(args) -> int:
    """proposal AR@AN and AUC (official ActivityNet semantics, as BSN/BMN report)

    Average recall vs average number of proposals per video, and its AUC.
    """
    check_outputs({"--json": args.json}, _ground_truth_inputs(args, "the proposals PROPOSALS", args.proposals))
    annotations, ground_truth = _load_ground_truth(args)
    thresholds = parse_tiou(args.tiou)
    proposals = read_predictions(args.proposals, label_names=_label_names(annotations), require_labels=False)
    proposals = align_video_ids(proposals, annotations.keys())
    ground_truth, coverage = cover(ground_truth, distinct(proposals.video), _subset_name(args, annotations),
                                   args.covered_only)
    result = evaluate_proposals(ground_truth, proposals, args.max_proposals or None, thresholds)
    for note in prediction_notes(proposals, annotations.keys(), "are left out"):  # after: a refusal is one line
        print(f"sola eval-proposals: note: {note}", file=sys.stderr)
    summary = {**result.to_dict(), "coverage": coverage.to_dict()}
    print(f"{len(ground_truth)} ground-truth segments in {len(annotations)} videos; {len(proposals)} proposals")
    for key, value in summary.items():
        if key.startswith("AR@"):
            print(f"{key:<7} {100 * value:6.2f}")
    print(f"AUC     {100 * result.auc:6.2f}")
    print(coverage.line())
    if args.json:
        atomic_write_text(args.json, json_text(summary, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def run_probe(args) -> int:
    """linear probe: action vs background snippets, baseline and SoLa side by side

    Linear evaluation of snippet features: the reference SGD protocol and a converged class-balanced
    logistic regression, with accuracy, balanced accuracy, AP and boundary accuracy.
    """
    from sola.adapt.adapter import load_adapter
    from sola.evaluate.probe import compare_probe, format_probe_table, json_ready

    if args.adapter and args.adapted:
        raise ConfigError("give either --adapter or --adapted, not both")
    check_outputs({"--json": args.json}, {"the input store FEATURES": args.features, "--adapter": args.adapter,
                                          "--adapted": args.adapted, "--config": args.config,
                                          **_annotation_inputs(args)})
    config = ProbeConfig.load(args.config, config_overrides(args))
    device = resolve_device(args.device)
    store = store_from_args(args)
    adapted = None
    if args.adapted:
        options = {key: getattr(args, key) for key in ("prefix", "suffix") if getattr(args, key, None) is not None}
        adapted = open_store(args.adapted, layout=args.layout, **options)
    annotations = annotations_from_args(args)
    adapter = load_adapter(args.adapter) if args.adapter else None
    table = compare_probe(
        store, annotations, adapter, progress=not args.quiet, device=device, adapted_store=adapted, config=config,
        train_subset=args.train_subset, val_subset=args.val_subset,
    )
    print(format_probe_table(table))
    if args.json:
        atomic_write_text(args.json, json_text(json_ready(table), indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


def _annotation_inputs(args) -> dict:
    """--annotations and --metadata, for `check_outputs`."""
    return {"--annotations": args.annotations, "--metadata": args.metadata}


def run_select(args) -> int:
    """judge the identity and every checkpoint of a run; the best becomes RUN_DIR/best.safetensors

    Judge the identity (the original features) and every checkpoints/epoch_XXXX.safetensors of a run on a
    held-out part of the subset the TAL head trains on (never the evaluation subset), by the linear probe
    (default) or, with --criterion head, by a short proxy of the TAL head (--head-config) over paired seeds;
    copy the winner to RUN_DIR/best.safetensors (an identity adapter when no checkpoint beats the original
    features) and write RUN_DIR/select.json.
    """
    from sola.evaluate.probe import format_probe_table
    from sola.evaluate.select_head import choose_checkpoint, format_head_table
    from sola.tal.config import load_tal_config

    config = ProbeConfig.load(args.config, config_overrides(args))
    device = resolve_device(args.device)
    if args.features is not None:
        store = open_store(args.features, layout=args.layout, **store_options(args))
    else:
        store = fitted_store(args.run_dir)
    # RUN_DIR is this command's own output folder; only what it writes there is checked
    check_outputs({"RUN_DIR": [f"{args.run_dir}/{BEST}", f"{args.run_dir}/{SELECTION}", f"{args.run_dir}/select_head"]},
                  {"the input store": store.path, "--config": args.config, "--head-config": args.head_config,
                   **_annotation_inputs(args)})
    annotations = annotations_from_args(args)
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr))
    head = load_tal_config(args.head_config) if config.select.criterion == "head" else None
    table = choose_checkpoint(
        args.run_dir, store, annotations, config, head, progress=not args.quiet, log=log, device=device,
        subset=args.subset, heldout_subset=args.heldout_subset,
    )
    print(format_head_table(table) if table.get("criterion") == "head" else format_probe_table(table))
    print(table["message"])
    print(f"wrote {args.run_dir}/{BEST} and {args.run_dir}/{SELECTION}")
    return 0


def run_tsm(args) -> int:
    """picture of a video's temporal self-similarity map, before and after SoLa

    Cosine self-similarity map of one video (and of its SoLa features with --adapter), one colour scale,
    ground truth along both axes, the target kernel as an inset.
    """
    from sola.evaluate.tsm import write_tsm_picture

    check_outputs({"--out": args.out}, {"the input store FEATURES": args.features, "--adapter": args.adapter,
                                        **_annotation_inputs(args)})
    store = store_from_args(args)
    annotations = annotations_from_args(args) if args.annotations else None
    path = write_tsm_picture(
        store, args.video, args.out, adapter=args.adapter, annotations=annotations,
        feat_stride=args.feat_stride, num_frames=args.num_frames, fps=args.fps,
    )
    print(f"wrote {path}")
    return 0
