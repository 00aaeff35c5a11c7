"""Data subcommands: `sola inspect` (what a feature store holds, and whether it is clean) and
`sola splice` (trimmed-clip features -> a pseudo-untrimmed localization benchmark)."""

from __future__ import annotations

import argparse

from sola.cli.common import (FRACTION, SEED, add_annotation_arguments, add_command, add_config_arguments, add_store_arguments,
                             annotations_from_args, config_overrides, integer, store_from_args, store_options)
from sola.core.paths import check_outputs
from sola.data.splice import SpliceConfig, SpliceSections, parse_clip_range, splice_store

# Named flags of `sola splice`: shortcuts for single keys of its config.
SPLICE_SHORTCUTS = [
    ("--videos", "splice.videos", {"type": integer(2), "help": f"videos to write (default {SpliceConfig.videos})"}),
    ("--actions", "splice.actions", {"type": integer(1), "help": "classes that are actions; the rest are background "
                                     f"(default {SpliceConfig.actions})"}),
    ("--seed", "splice.seed", {"type": SEED, "help": "which classes, clips and orders (default 0)"}),
    ("--action-fraction", "splice.action_fraction", {"type": FRACTION, "help": "chance that a clip is an action clip "
                                                     f"(default {SpliceConfig.action_fraction})"}),
    ("--validation-fraction", "splice.validation_fraction", {"type": FRACTION, "help": "share of the videos, and of "
                                                             "each class's clips, for validation (default 0.25)"}),
    ("--holdout-fraction", "splice.holdout_fraction", {"type": FRACTION, "help": "share of the other videos and clips "
                                                       "in a 'holdout' subset for checkpoint selection (default 0.2; "
                                                       "0: none)"}),
]


def register(subparsers) -> None:
    """Add the data subcommands to the `sola` parser."""
    inspect = add_command(subparsers, "inspect", run_inspect, threads=False)
    add_store_arguments(inspect)
    inspect.add_argument("--flow", default=None, help="a flow store to combine with FEATURES (RGB) along channels")
    add_annotation_arguments(inspect, required=False)
    inspect.add_argument("--subset", default=None, help="compare ids with this annotation subset only")
    inspect.add_argument("--strict", action="store_true", help="fail when feature and annotation ids differ")
    inspect.add_argument("--quiet", action="store_true", help="no progress bar")

    splice = add_command(subparsers, "splice", run_splice, threads=False)
    add_store_arguments(splice, name="clips")
    splice.add_argument("out", help="output directory (must be new or empty)")
    add_config_arguments(splice, "splice config (section splice: sola.data.splice.SpliceConfig)", "splice.fps=25",
                         SPLICE_SHORTCUTS)
    splice.add_argument("--clips-per-video", default=None, metavar="A:B", help="clips per video, uniform in [A, B] "
                        f"(default {SpliceConfig.min_clips}:{SpliceConfig.max_clips}; = --set splice.min_clips=A "
                        "--set splice.max_clips=B)")
    splice.add_argument("--quiet", action="store_true", help="no progress bar")


def _open(args: argparse.Namespace):
    from sola.data.stores import open_store
    from sola.data.stores.twostream import TwoStreamStore

    options = store_options(args)
    if args.flow:
        rgb = open_store(args.features, layout=args.layout, **options)
        return TwoStreamStore(rgb=rgb, flow=open_store(args.flow, layout=args.layout, **options))
    return open_store(args.features, layout=args.layout, **options)


def run_inspect(args: argparse.Namespace) -> int:
    """summarise a feature store: layout, videos, dim, dtype, lengths, NaN/Inf, empty videos

    Read every video once and report the store. Exit 0 when clean, 1 when it finds NaN/Inf values, values whose
    squares overflow float32 (beyond +-1.8e19), empty or unreadable videos (entries that are no regular file
    included: links to nothing, FIFOs, devices, directories; they are never opened), mixed feature dims, or no
    video at all (or ids do not match with --strict).
    """
    import numpy as np

    from sola.data.stores.checks import scan_store

    store = _open(args)
    summary = scan_store(store, progress=not args.quiet)
    options = ", ".join(f"{k}={v!r}" for k, v in summary.options.items() if v not in (None, ""))
    print(f"store:        {summary.path}")
    print(f"layout:       {summary.layout}{f' ({options})' if options else ''}")
    print(f"videos:       {summary.videos}")
    if summary.dims:
        dims = ", ".join(f"{d} ({n} videos)" for d, n in sorted(summary.dims.items()))
        print(f"feature dim:  {dims if len(summary.dims) > 1 else next(iter(summary.dims))}")
        mixed = len(summary.dtypes) > 1
        dtypes = ", ".join(f"{t} ({n} videos)" if mixed else t for t, n in summary.dtypes.items())
        print(f"dtype:        {dtypes}")
        lengths = np.asarray(summary.lengths)
        print(
            f"length:       min {lengths.min()} / median {float(np.median(lengths)):g} / max {lengths.max()} "
            f"snippets ({lengths.sum()} in all)"
        )
    print(f"NaN values:   {summary.nan_values}")
    print(f"Inf values:   {summary.inf_values}")
    if summary.huge_values:
        print(f"huge values:  {summary.huge_values} (beyond +-1.8e19, up to {summary.largest:.3g})")
    print(f"empty videos: {len(summary.empty_videos)}")
    if summary.unreadable:
        print(f"unreadable:   {len(summary.unreadable)}")
    problems = summary.problems()
    if args.annotations:
        from sola.data.annotations import match_ids

        annotations = annotations_from_args(args)
        if args.subset:
            annotations = annotations.subset(args.subset)
        match = match_ids(store.video_ids(), annotations.keys())
        print(f"annotations:  {match.summary()}")
        if match.none_match():
            problems.append("no feature id matches an annotated id")
        if args.strict and (match.features_without_annotation or match.annotations_without_features):
            problems.append("feature and annotation ids differ (--strict)")
    for line in problems:
        print(f"problem:      {line}")
    return 1 if problems else 0


def run_splice(args: argparse.Namespace) -> int:
    """concatenate trimmed-clip features into pseudo-untrimmed videos (a localization benchmark)

    Clips are named CLASS_N; --actions classes become actions, the others background. Training and
    validation videos use disjoint clips. Writes OUT/features (npy) and OUT/annotations.json.
    """
    check_outputs({"OUT": [args.out, f"{args.out}/features", f"{args.out}/annotations.json"]},
                  {"the clip store CLIPS": args.clips, "--config": args.config}, whole=["OUT"])  # OUT must be empty
    overrides = config_overrides(args)
    if args.clips_per_video is not None:
        overrides["splice.min_clips"], overrides["splice.max_clips"] = parse_clip_range(args.clips_per_video)
    config = SpliceSections.load(args.config, overrides).splice
    summary = splice_store(store_from_args(args, name="clips"), args.out, config, progress=not args.quiet)
    print(
        f"wrote {summary['videos']} videos ({summary['validation_videos']} validation, "
        f"{summary['holdout_videos']} holdout; "
        f"{summary['min_length']}-{summary['max_length']} snippets, {summary['segments']} actions of "
        f"{len(summary['actions'])} classes, dim {summary['dim']}) to {summary['features']} and {summary['annotations']}"
    )
    return 0
