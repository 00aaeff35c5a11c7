"""`sola compare`: the same TAL head on original and SoLa features, one table."""

from __future__ import annotations

import argparse

from sola.cli.common import (NON_NEGATIVE, add_annotation_arguments, add_command, add_config_arguments,
                             add_store_arguments, annotations_from_args, check_output_dir, config_overrides, integer,
                             store_from_args)
from sola.core.config import SoLaConfig, load_config
from sola.core.devices import is_main_process
from sola.core.errors import ConfigError
from sola.core.paths import check_outputs
from sola.tal.config import load_tal_config


def register(subparsers) -> None:
    """Add `sola compare` to the `sola` parser."""
    p = add_command(subparsers, "compare", run_compare)
    add_head_and_sola_arguments(p)
    p.add_argument("--adapter", default=None, help="SoLa adapter: a .safetensors file (used as given) or a run "
                   "directory (selected on, like a run fitted here); default: fit one in OUT/sola_run")
    p.add_argument("--modes", default="baseline,sola", help="comma list of baseline, sola, fitted (the run's "
                   "last adapter as fitted, beside the one selection chose), unified, unified+sm, and the controls "
                   "smooth (the features smoothed along time by a fixed kernel of the adapter's receptive field) and "
                   "untrained (an untrained adapter gated to SoLa's departure), each judged against baseline and sola")
    p.add_argument("--jobs", type=integer(1, 256), default=1, help="heads trained at once on the CPU, each in a "
                   "process of its own with an equal share of --threads (default 1; a small head gains more from a "
                   "second process than from a second thread; ignored under torchrun and on a GPU)")
    p.add_argument("--seeds", type=integer(1, 1000), default=3, help="seeds 0..N-1 for every mode (default 3)")
    p.add_argument("--no-probe", action="store_true", help="skip the linear-probe columns")
    p.add_argument("--out", default="compare_out", help="output directory (results are resumable)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_head_and_sola_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of commands that fit SoLa and train the head (`compare`, `ablate`): the store, its
    annotations, `--config/--set` (TAL or SoLa keys), `--sola-config`, selection and `--sm-weight`."""
    add_store_arguments(p)
    add_annotation_arguments(p)
    add_config_arguments(p, "TAL config, e.g. thumos14_i3d or tal_synthetic_cpu (default: the THUMOS14 values)",
                         "train.epochs=5 (TAL sections data/model/train/test) or fit.lr=1e-4 (SoLa sections "
                         "adapter/matching/fit/transform: the schedule of every fit)")
    p.add_argument("--sola-config", default=None, help="SoLa YAML config used when fitting an adapter here")
    p.add_argument("--no-select", action="store_true", help="use the run's final adapter (a run directory: its "
                   "best.safetensors, else adapter.safetensors) instead of selecting among the identity and its "
                   "checkpoints on held-out videos of the head's training subset")
    p.add_argument("--select-by", choices=["probe", "head"], default="probe",
                   help="judge the candidates by the linear probe (default, the reference's rule) or by a short "
                   "proxy of this head on the held-out videos, paired seeds (`--set select.head_epochs=6`, "
                   "`select.seeds=3`, `select.head_margin=0`)")
    p.add_argument("--heldout-subset", default=None, metavar="SUBSET",
                   help="select on this subset instead of held-out videos of the head's training subset "
                   "(`sola splice` data: holdout)")
    p.add_argument("--sm-weight", type=NON_NEGATIVE, default=1.0, help="weight of Similarity Matching in unified+sm")
    p.add_argument("--smooth-kernel", choices=["box", "gaussian"], default="box",
                   help="the smooth control's kernel (default box)")
    p.add_argument("--smooth-size", type=integer(1), default=None, metavar="K",
                   help="the smooth control's taps (odd; default the adapter's kernel_size)")
    p.add_argument("--smooth-dilation", type=integer(1), default=None, metavar="D",
                   help="snippets between the smooth control's taps (default the adapter's dilation)")


def smooth_options(args: argparse.Namespace) -> dict:
    """The smooth control's settings over the adapter's geometry (`sola.adapt.controls.SmoothConfig` fields)."""
    chosen = {"kernel": args.smooth_kernel, "kernel_size": args.smooth_size, "dilation": args.smooth_dilation}
    return {key: value for key, value in chosen.items() if value is not None}


def head_and_sola_configs(args: argparse.Namespace):
    """`(TalConfig, SoLaConfig)` from `--config`, `--sola-config` and `--set`, each key to its config's sections."""
    overrides = config_overrides(args)
    sola_keys = {key: value for key, value in overrides.items() if key.split(".")[0] in SoLaConfig.sections()}
    tal_keys = {key: value for key, value in overrides.items()
                if key not in sola_keys and key.split(".")[0] != "select"}
    return load_tal_config(args.config, tal_keys), load_config(args.sola_config, sola_keys)


def selection_options(args: argparse.Namespace) -> dict:
    """The `select` section of the selection config: `--select-by`, then `--set select.KEY=VALUE`."""
    chosen = {key.split(".", 1)[1]: value for key, value in config_overrides(args).items()
              if key.split(".")[0] == "select"}
    return {"criterion": getattr(args, "select_by", "probe"), **chosen}


def head_and_sola_inputs(args: argparse.Namespace) -> dict:
    """The input files of `compare` and `ablate`, for `check_outputs`."""
    return {"the input store FEATURES": args.features, "--annotations": args.annotations, "--metadata": args.metadata,
            "--config": args.config, "--sola-config": args.sola_config}


def run_compare(args: argparse.Namespace) -> int:
    """TAL head on original vs SoLa features (and unified modes): mAP table over seeds

    Train the built-in TAL head per mode with identical seeds and print mAP per tIoU (mean +- std over
    seeds), probe accuracy and seconds per epoch; writes OUT/compare.md and OUT/compare.json.
    """
    from sola.experiments.compare import compare, format_markdown, parse_modes, verdict_lines

    out = args.out
    fitted_here = [f"{out}/sola_run"] if args.adapter is None else []  # --adapter RUN_DIR is never written into
    check_outputs({"--out": [out, f"{out}/results", f"{out}/sola_features", f"{out}/fitted_features", f"{out}/sola_select",
                            *fitted_here]},
                  {**head_and_sola_inputs(args), "--adapter": args.adapter})
    check_output_dir(out)
    modes = parse_modes(args.modes)
    if args.seeds < 1:
        raise ConfigError("--seeds must be at least 1")
    tal_config, sola_config = head_and_sola_configs(args)
    main = is_main_process()  # under torchrun every rank trains its shard; rank 0 reports
    table = compare(
        store_from_args(args),
        annotations_from_args(args),
        tal_config,
        args.out,
        modes=modes,
        seeds=args.seeds,
        adapter=args.adapter,
        sola_config=sola_config,
        sm_weight=args.sm_weight,
        probe=not args.no_probe,
        progress=main and not args.quiet,
        log=print if main else (lambda line: None),
        select=not args.no_select,
        heldout_subset=args.heldout_subset,
        selection=selection_options(args),
        smooth=smooth_options(args),
        jobs=args.jobs,
    )
    if not main:
        return 0
    print(format_markdown(table, with_verdict=False))  # the verdict: once, below
    used = table.get("sola_adapter")
    if used:
        print(f"sola features: {used['message'] or used['source']}")
    print(f"written to {args.out}/compare.md and {args.out}/compare.json")
    for line in verdict_lines(table, average_only=True):  # per tIoU: compare.md
        print(f"verdict: {line}")
    return 0
