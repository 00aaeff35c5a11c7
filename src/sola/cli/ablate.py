"""`sola ablate`: a grid of SoLa (and head) settings, each against the original features, over seeds."""

from __future__ import annotations

import argparse

from sola.cli.common import add_command, annotations_from_args, check_output_dir, integer, store_from_args
from sola.cli.compare import (add_head_and_sola_arguments, head_and_sola_configs, head_and_sola_inputs,
                              selection_options, smooth_options)
from sola.core.errors import ConfigError
from sola.core.paths import check_outputs
from sola.experiments.ablate import PRESETS, ablate, format_markdown, parse_grid


def register(subparsers) -> None:
    """Add `sola ablate` to the `sola` parser."""
    p = add_command(subparsers, "ablate", run_ablate)
    add_head_and_sola_arguments(p)
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a swept key and its values (repeatable: the points are the product); keys: mode "
                   "(sola, unified, unified+sm, and the controls smooth, untrained), features (both, rgb, flow), "
                   "SoLa or TAL config keys")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="the paper's ablations: receptive-field (kernel 1, 3, 5, 9 and 5 dilated by 2), unified "
                   "(separate vs unified vs unified + SM), encoder (the RGB half of a two-stream store vs both)")
    p.add_argument("--seeds", type=integer(1, 1000), default=3, help="seeds 0..N-1 per point (default 3)")
    p.add_argument("--out", required=True, help="output directory (resumable per point and seed)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run_ablate(args: argparse.Namespace) -> int:
    """the paper's ablations: a grid of settings, SoLa against the original features, over seeds

    Each grid point fits SoLa with the same schedule (optionally selecting the checkpoint), trains the head and
    measures probe and mAP beside the original features with the same seeds: mean +- std and the paired
    difference with its 95% interval. Writes OUT/ablate.md, OUT/ablate.json and one plot per swept key; rerun the
    same command to resume.
    """
    if args.grid and args.preset:
        raise ConfigError("give --grid or --preset, not both")
    # ablate rewrites and cleans its subfolders (features_rgb/, points/...): no input may live in OUT
    check_outputs({"--out": args.out}, head_and_sola_inputs(args), whole=["--out"])
    check_output_dir(args.out)
    points = PRESETS[args.preset] if args.preset else parse_grid(args.grid)
    tal_config, sola_config = head_and_sola_configs(args)
    table = ablate(store_from_args(args), annotations_from_args(args), tal_config,
                   points, args.out, seeds=args.seeds, sola_config=sola_config,
                   select=not args.no_select, heldout_subset=args.heldout_subset, sm_weight=args.sm_weight,
                   log=(lambda line: None) if args.quiet else print, selection=selection_options(args),
                   smooth=smooth_options(args))
    print(format_markdown(table))
    print(f"written to {args.out}/ablate.md, {args.out}/ablate.json and {len(table['plots'])} plot(s)")
    return 0
