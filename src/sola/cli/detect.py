"""`sola detect`: videos -> detections with a trained head (and a SoLa adapter), with timelines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sola.cli.common import (NON_NEGATIVE, add_annotation_arguments, add_command, annotations_from_args,
                             check_output_dir, integer)
from sola.core.paths import check_outputs


def register(subparsers) -> None:
    """Add `detect` to the `sola` parser."""
    p = add_command(subparsers, "detect", run_detect)
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files and/or directories of videos")
    p.add_argument("--head", required=True, metavar="TAL_RUN", help="run directory written by `sola tal train`")
    p.add_argument("--adapter", default=None, metavar="SOLA_RUN",
                   help="SoLa adapter (file or `sola train` run) the head's features were made with")
    p.add_argument("--features", default=None, metavar="EXTRACT_OUT",
                   help="a `sola extract` output on the head's grid: its features of these videos are reused (copied "
                   "into OUT/features, never written to), the others extracted (default: the store the head was "
                   "trained on, when it is one); one made on another grid is refused")
    add_annotation_arguments(p, required=False)
    p.add_argument("--out", default="detect_out", help="output directory (default detect_out): features, "
                   "detections.json, timelines/")
    p.add_argument("--min-score", type=NON_NEGATIVE, default=0.1,
                   help="detections scoring below this are not drawn or printed (all are written; default 0.1)")
    p.add_argument("--top", type=integer(0), default=10, help="how many of the best detections to print (default 10)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--cache", default=None, help="I3D weights cache (default $SOLA_CACHE or ~/.cache/sola)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_detect(args: argparse.Namespace) -> int:
    """detect actions in videos with a trained head (official ActivityNet JSON + timeline pictures)

    Extract Kinetics-400 I3D features of each video on the grid the head was trained on (cached in
    OUT/features: a rerun reuses them; those a `sola extract` output on that grid already holds,
    --features or the head's training store, are copied instead of extracted again), apply
    --adapter when the head was trained on SoLa features, run the head, and write OUT/detections.json (official ActivityNet format: seconds, class names)
    and OUT/timelines/<video>.png (detections coloured by class with their scores, ground truth
    beneath when --annotations are given). Unreadable videos are reported and skipped. A head
    trained on other features (another encoder or width, with or without SoLa) is refused.
    """
    from sola.experiments.detect import DETECTIONS, TIMELINES, detect_videos

    out = Path(args.out)
    check_outputs({"--out": [out, out / "features", out / "features_sola", out / DETECTIONS, out / TIMELINES],
                   "--cache": args.cache},
                  {"the input VIDEO_OR_DIR": args.inputs, "the head run --head": args.head, "--adapter": args.adapter,
                   "--features": None if _same(args.features, out / "features") else args.features,
                   "--annotations": args.annotations, "--metadata": args.metadata}, shallow=["the input VIDEO_OR_DIR"])
    check_output_dir(out)
    annotations = annotations_from_args(args) if args.annotations else None
    summary = detect_videos(args.inputs, args.head, args.out, adapter=args.adapter, annotations=annotations,
                            min_score=args.min_score, device=args.device, progress=False if args.quiet else None,
                            cache=args.cache, features=args.features)
    for note in summary.notes:
        print(f"sola detect: note: {note}", file=sys.stderr)
    for _, reason in summary.failed:
        print(f"sola detect: skipped: {reason}", file=sys.stderr)
    top = summary.top(args.top, args.min_score)
    if top:
        width = max(len(row[0]) for row in top)
        print(f"{'video':<{width}}  {'start':>7}  {'end':>7}  {'score':>5}  label")
        for video, start, end, label, score in top:
            print(f"{video:<{width}}  {start:7.2f}  {end:7.2f}  {score:5.2f}  {label}")
    else:
        print(f"no detection scores {args.min_score:g} or more")
    total = sum(len(v) for v in summary.predictions["results"].values())
    print(f"{total} detections of {len(summary.predictions['results'])} videos -> {summary.detections}; "
          f"timelines in {Path(args.out) / 'timelines'}")
    return 0 if not summary.failed else 1


def _same(path, other: Path) -> bool:
    """Whether `path` (None: no) is `other`: `--features OUT/features` names the cache `sola detect` resumes."""
    return path is not None and Path(path).resolve() == other.resolve()
