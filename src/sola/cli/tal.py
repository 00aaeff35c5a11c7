"""The built-in TAL head: `sola tal train`, `sola tal infer`, `sola tal eval`.

The head's modules (torch) are imported inside `train` and `infer`; `sola tal eval` needs none.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from sola.cli.common import (SEED, add_annotation_arguments, add_command, add_config_arguments, add_covered_only_argument,
                             add_resume_argument,
                             add_store_arguments, annotations_from_args, check_output_dir, config_overrides, integer,
                             resume_dir, store_from_args)
from sola.core.atomic import remove_stale_temporaries
from sola.core.devices import is_main_process, world_size
from sola.core.errors import PredictionError
from sola.core.paths import check_outputs, run_files
from sola.core.runs import (CLASSES, CONFIG, HEAD_RUN, METRICS, PREDICTIONS, STATE, WEIGHTS, WINDOW_CACHE, check_run,
                            check_safetensors, run_kind, write_json)
from sola.data.predictions import load_prediction_file, prediction_notes
from sola.evaluate.metrics import parse_tiou
from sola.tal.config import save_tal_config
from sola.tal.evaluation import evaluate_predictions, prediction_segments
from sola.tal.run import check_resume, resumed_config, run_config


def register(subparsers) -> None:
    """Add `sola tal {train,infer,eval}` to the `sola` parser."""
    tal = subparsers.add_parser(
        "tal", help="built-in temporal action localization head (ActionFormer family)",
        description="Train the built-in TAL head on features, predict segments, evaluate detection mAP.",
    )
    commands = tal.add_subparsers(dest="tal_command", metavar="COMMAND")
    tal.set_defaults(func=lambda args: (tal.print_help(), 2)[1])

    p = add_command(commands, "train", run_train,
                    help="train the head on the training subset; writes a run directory",
                    description=f"Train the head on data.train_subset and write RUN_DIR/{{{WEIGHTS}, {CONFIG}, "
                    f"{CLASSES}, {METRICS}}}. The state after each epoch is kept in RUN_DIR/{STATE}; "
                    "rerun the same command with --resume to continue.")
    add_store_arguments(p)
    add_annotation_arguments(p)
    p.add_argument("--out", metavar="RUN_DIR", help="run directory to write")
    add_resume_argument(p)
    add_config_arguments(p, "TAL config (sola_extract_i3d for `sola extract` features, thumos14_i3d, activitynet_tsp, "
                         "tal_synthetic_cpu, tal_splice_cpu); "
                         "default: the THUMOS14 values", "train.epochs=5",
                         [("--seed", "train.seed", {"type": SEED, "help": "random seed"})])
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines (without it: a bar on "
                   "a terminal, one line per epoch with loss, lr and seconds otherwise)")

    p = add_command(commands, "infer", run_infer)
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `sola tal train`")
    add_store_arguments(p)
    add_annotation_arguments(p)
    p.add_argument("--subset", default=None, help="subset to predict (default: data.test_subset of the run)")
    p.add_argument("--out", default=None, help="prediction file (default: RUN_DIR/predictions.json)")
    p.add_argument("--video-scores", default=None, help="class-agnostic runs: JSON {video: {label: score}} fused "
                   "with the proposals (ActivityNet protocol)")
    p.add_argument("--batch-size", type=integer(1), default=None, help="videos per forward pass (default: train.batch_size)")
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: train.device of the run)")

    p = add_command(commands, "eval", run_eval, threads=False)
    p.add_argument("predictions", metavar="PREDICTIONS|RUN_DIR", help="prediction file or run directory")
    add_annotation_arguments(p)
    p.add_argument("--subset", default=None, help="subset to evaluate (default: data.test_subset of the run)")
    p.add_argument("--tiou", default=None, help="thresholds: thumos14, activitynet, 0.3,0.5 or 0.3:0.1:0.7 "
                   "(default: test.tiou_thresholds of the run)")
    p.add_argument("--class-agnostic", action="store_true", default=None,
                   help="score every segment as one class 'action' (default: when the run has one class)")
    add_covered_only_argument(p)
    p.add_argument("--json", default=None, metavar="OUT", help="also write the result as JSON (atomically)")


def _states_input_dim(args: argparse.Namespace) -> bool:
    """Whether `--config` (a file or a shipped name) or `--set` states data.input_dim."""
    from sola.core.config import packaged_config, read_yaml_sections

    if "data.input_dim" in config_overrides(args):
        return True
    if not args.config:
        return False
    data = read_yaml_sections(packaged_config(args.config)).get("data")
    return isinstance(data, dict) and "input_dim" in data


def run_train(args: argparse.Namespace) -> int:
    """`sola tal train`: train on data.train_subset and write the run directory (resumable)."""
    from sola.tal.experiment import build_items, class_names, fit_config_to_data, note_fitted
    from sola.tal.features import features_record
    from sola.tal.run import save_run
    from sola.tal.train import STATE_FIX, STATE_FORMAT, train_head

    out = resume_dir(args)
    check_outputs({"--out" if args.out else "--resume": out},
                  {"the input store FEATURES": args.features, "--config": args.config, **_annotation_inputs(args)})
    check_output_dir(out)
    check_resume(out, bool(args.resume))
    remove_stale_temporaries(out)  # leftovers of a killed writer
    config = resumed_config(out, args.config, config_overrides(args), bool(args.resume))
    store = store_from_args(args)
    annotations = annotations_from_args(args)
    names = class_names(annotations, config)
    given, config = config, fit_config_to_data(config, store.dim(), len(names))
    if main_writes_config(out):  # before any epoch, so that `--resume` finds it however early a kill comes
        save_tal_config(config, out / CONFIG)
    elif args.resume and (out / STATE).exists():  # a damaged state is reported now, not after the data is read
        check_safetensors(out / STATE, STATE_FORMAT, "training state", STATE_FIX)
    cache = out / WINDOW_CACHE  # layouts without random access: float32 copies, memory-mapped, removed after
    items = build_items(store, annotations, config.data.train_subset, config, names, cache_dir=cache)
    note_fitted(given, config, args.features, stated=_states_input_dim(args))  # after the data checks: one line
    main = is_main_process()
    if main:
        processes = world_size()
        print(f"sola tal train: {len(items)} {config.data.train_subset} videos, {config.data.num_classes} classes, "
              f"input dim {config.data.input_dim}, {config.train.warmup_epochs + config.train.epochs} epochs "
              f"({config.train.warmup_epochs} warm-up + {config.train.epochs} train.epochs), "
              f"{processes} process{'es' if processes > 1 else ''} x {config.train.batch_size // processes} videos "
              f"per step (global batch {config.train.batch_size})", file=sys.stderr)
    started = time.perf_counter()
    result = train_head(items, config, state_dir=out, resume=bool(args.resume),
                        progress=False if args.quiet else None)
    if not main:
        return 0  # under torchrun, rank 0 writes the run
    save_run(out, result.model, config, names, result.history, features_record(store, config))
    shutil.rmtree(cache, ignore_errors=True)
    if result.resumed_epochs and result.resumed_epochs == len(result.history):
        print(f"already trained ({len(result.history)} epochs, final loss {result.history[-1]['loss']:.4f}); "
              f"not retrained; run written to {out}")
        return 0
    resumed = f"resumed after epoch {result.resumed_epochs}, " if result.resumed_epochs else ""
    print(f"trained in {time.perf_counter() - started:.1f} s ({resumed}{result.seconds_per_epoch:.2f} s/epoch, "
          f"final loss {result.history[-1]['loss']:.4f}); run written to {out}")
    return 0


def main_writes_config(out: Path) -> bool:
    """Whether this process writes the run's config now: rank 0, and the run has no finished epoch (a
    saved state keeps its config.yaml until the state is checked against the command)."""
    return is_main_process() and not (out / STATE).exists()


def run_infer(args: argparse.Namespace) -> int:
    """predict segments with a trained head (official ActivityNet JSON)

    Write predictions {'results': {video: [{label, score, segment}]}} in seconds. The features must be of
    the kind the head was trained on (its features.json: width, SoLa adapter, extraction grid).
    """
    from sola.core.distributed import setup_distributed
    from sola.tal.experiment import build_items
    from sola.tal.features import check_store, read_features
    from sola.tal.infer import predict_items, prediction_dict, video_scores_for
    from sola.tal.run import load_run

    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / PREDICTIONS
    # the run folder is this command's output by default (its predictions.json); its other files are inputs
    check_outputs({"--out": out}, {"the input store FEATURES": args.features, "--video-scores": args.video_scores,
                                   **_annotation_inputs(args), **run_files(run_dir, keep=[PREDICTIONS])})
    config, _ = run_config(run_dir)
    device = setup_distributed(args.device or (config.train.device if config else "auto")).device  # torchrun: shards
    model, config, names = load_run(run_dir, device=str(device))
    store = store_from_args(args)
    record = read_features(run_dir)  # None: a run older than features.json, nothing to check against
    if record is not None:
        check_store(record, str(run_dir), store, config)  # before any work: features of another kind
    annotations = annotations_from_args(args)
    subset = args.subset or config.data.test_subset
    items = build_items(store, annotations, subset, config, names, key="--subset")
    detections = predict_items(model, items, config, batch_size=args.batch_size or config.train.batch_size, device=device)
    predictions, mode = prediction_dict(detections, names, video_scores_for(config, args.video_scores),
                                        config.test.video_score_topk)
    if not is_main_process():
        return 0  # every rank holds all detections; rank 0 writes them
    write_json(out, predictions)
    total = sum(len(v) for v in predictions["results"].values())
    print(f"{total} segments for {len(items)} {subset} videos ({mode}) written to {out}")
    truth = {v for v, entry in annotations.subset(subset).items() if any(not s.ambiguous for s in entry.segments)}
    missing = len(truth - set(predictions["results"]))
    if missing:
        print(f"predicted {len(truth) - missing} of the {len(truth)} ground-truth videos of {subset} ({missing} have no "
              "features): `sola tal eval --covered-only` scores those it predicted, without it the others count as "
              "misses")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """detection mAP of predictions at the run's tIoU thresholds

    Detection mAP (official ActivityNet semantics, sola.evaluate.metrics) of a prediction file, or of
    RUN_DIR/predictions.json.
    """
    path = Path(args.predictions)
    # a run folder: its files are inputs, a new file beside them is allowed
    check_outputs({"--json": args.json}, {"the predictions PREDICTIONS": path / PREDICTIONS if path.is_dir() else path,
                                          **_annotation_inputs(args), **run_files(path if path.is_dir() else None)})
    config, _ = run_config(path)
    if path.is_dir():
        if config is None and run_kind(path) is None:
            raise PredictionError(f"{path} is not a run folder nor a prediction file (a directory without config.yaml "
                                  "or other run files); give a prediction file or the folder of a `sola tal train` run")
        if config is None:
            check_run(path, HEAD_RUN)  # names what the folder is instead
        path = path / PREDICTIONS
        if not path.exists():
            raise PredictionError(f"{path}: no such prediction file; write one with `sola tal infer`")
    predictions = load_prediction_file(path)  # the safe loader of every prediction file (checks the path first)
    if not isinstance(predictions, dict) or not isinstance(predictions.get("results"), dict):
        raise PredictionError(f"{path}: not an ActivityNet prediction file {{'results': {{video: [...]}}}}")
    annotations = annotations_from_args(args)
    subset = args.subset or (config.data.test_subset if config else None)
    if subset is None:
        subsets = list(annotations.subsets())
        if len(subsets) != 1:
            raise PredictionError(f"{args.annotations}: several subsets {subsets}; choose one with --subset")
        subset = subsets[0]
    if args.tiou:
        tiou = parse_tiou(args.tiou)
    elif config is not None:
        tiou = config.test.tiou_thresholds
    else:
        tiou = parse_tiou(None, default="thumos14")
    agnostic = args.class_agnostic if args.class_agnostic is not None else bool(config and config.data.num_classes == 1
                                                                               and not _fused(predictions))
    result = evaluate_predictions(predictions, annotations, subset, tiou, class_agnostic=agnostic, where=str(path),
                                  covered_only=args.covered_only)
    names = {index: name for name, index in annotations.label_index().items()}  # notes after: a refusal is one line
    for note in prediction_notes(prediction_segments(predictions, str(path), names), annotations.subset(subset).keys(),
                                 "are scored as false positives"):
        print(f"sola tal eval: note: {note}", file=sys.stderr)
    print(f"{'tIoU':>6}  {'mAP':>7}")
    for threshold, value in zip(result.tiou_thresholds, result.mAP):
        print(f"{threshold:6.2f}  {100 * value:6.2f}%")
    print(f"{'avg':>6}  {100 * result.average_mAP:6.2f}%   ({subset}, {len(result.classes)} classes"
          f"{', class-agnostic' if agnostic else ''})")
    print(result.coverage.line())
    if args.json:
        write_json(args.json, {**result.to_dict(), "subset": subset, "class_agnostic": agnostic})
    return 0


def _annotation_inputs(args) -> dict:
    """--annotations and --metadata, for `check_outputs`."""
    return {"--annotations": args.annotations, "--metadata": args.metadata}


def _fused(predictions: dict) -> bool:
    external = predictions.get("external_data")
    return isinstance(external, dict) and bool(external.get("used"))
