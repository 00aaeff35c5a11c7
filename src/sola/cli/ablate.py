"""`sola ablate`: a grid of SoLa (and head) settings, each against the original features, over seeds."""

from __future__ import annotations

import argparse

from sola.ablate import PRESETS, ablate, format_markdown, parse_grid
from sola.cli.common import (NON_NEGATIVE, add_annotation_arguments, add_command, add_config_arguments,
                             add_store_arguments, annotations_from_args, config_overrides, integer, store_from_args)
from sola.config import SoLaConfig, load_config
from sola.errors import ConfigError
from sola.tal.config import load_tal_config


def register(subparsers) -> None:
    """Add `sola ablate` to the `sola` parser."""
    p = add_command(subparsers, "ablate", run_ablate)
    add_store_arguments(p)
    add_annotation_arguments(p, bad_segments="clip")
    add_config_arguments(p, "TAL config, e.g. thumos14_i3d or tal_synthetic_cpu (default: the THUMOS14 values)",
                         "train.epochs=5 (TAL sections) or fit.steps=100 (SoLa sections: the schedule of every fit)")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="a swept key and its values (repeatable: the points are the product); keys: mode "
                   "(sola, unified, unified+sm), features (both, rgb, flow), SoLa or TAL config keys")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="the paper's ablations: receptive-field (kernel 1, 3, 5, 9 and 5 dilated by 2), unified "
                   "(separate vs unified vs unified + SM), encoder (the RGB half of a two-stream store vs both)")
    p.add_argument("--sola-config", default=None, help="SoLa YAML config: the schedule every point is fitted with")
    p.add_argument("--seeds", type=integer(1), default=3, help="seeds 0..N-1 per point (default 3)")
    p.add_argument("--no-select", action="store_true", help="use each fit's final adapter instead of selecting "
                   "among the identity and its checkpoints on held-out videos of the head's training subset")
    p.add_argument("--heldout-subset", default=None, metavar="SUBSET",
                   help="select on this subset (`sola splice` data: holdout)")
    p.add_argument("--sm-weight", type=NON_NEGATIVE, default=1.0, help="weight of Similarity Matching in unified+sm")
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
    points = PRESETS[args.preset] if args.preset else parse_grid(args.grid)
    overrides = config_overrides(args)
    sola_keys = {key: value for key, value in overrides.items() if key.split(".")[0] in SoLaConfig.sections()}
    tal_keys = {key: value for key, value in overrides.items() if key not in sola_keys}
    table = ablate(store_from_args(args), annotations_from_args(args), load_tal_config(args.config, tal_keys),
                   points, args.out, seeds=args.seeds, sola_config=load_config(args.sola_config, sola_keys),
                   select=not args.no_select, heldout_subset=args.heldout_subset, sm_weight=args.sm_weight,
                   log=(lambda line: None) if args.quiet else print)
    print(format_markdown(table))
    print(f"written to {args.out}/ablate.md, {args.out}/ablate.json and {len(table['plots'])} plot(s)")
    return 0
