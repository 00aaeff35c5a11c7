"""Core subcommands: synth, train, transform, demo.

The library modules are imported inside each command, so that building the parser (`sola --help`)
and `sola synth` never import torch.
"""

from __future__ import annotations

import argparse
import sys

from sola.cli.common import (POSITIVE, SEED, add_command, add_config_arguments, add_resume_argument, add_store_arguments,
                             check_output_dir, config_overrides, integer, resume_dir, store_from_args)
from sola.core.devices import is_main_process
from sola.core.paths import check_outputs

# Named flags of `sola synth`, `sola train` and `sola transform`: shortcuts for single config keys.
SYNTH_SHORTCUTS = [
    ("--videos", "synth.videos", {"type": integer(1), "help": "videos (default 200)"}),
    ("--dim", "synth.dim", {"type": integer(1), "help": "feature dimension C (default 256)"}),
    ("--classes", "synth.classes", {"type": integer(1), "help": "action classes (default 10)"}),
    ("--seed", "synth.seed", {"type": SEED, "help": "the benchmark's seed (default 0)"}),
]
NAN_POLICIES = ["error", "zero", "drop-video"]
FIT_SHORTCUTS = [
    ("--epochs", "fit.epochs", {"type": integer(1)}),
    ("--seed", "fit.seed", {"type": SEED}),
    ("--batch-size", "fit.batch_size", {"type": integer(1)}),
    ("--lr", "fit.lr", {"type": POSITIVE}),
    ("--windows-per-video", "fit.windows_per_video", {"type": integer(1), "help": "training windows per video per epoch"}),
    ("--checkpoint-every", "fit.checkpoint_every", {"type": integer(1), "help": "epochs between checkpoints (default 10)"}),
    ("--steps", "fit.steps", {"type": integer(0, 10**12), "help": "optimiser steps in all (overrides --epochs; 0: use epochs)"}),
    ("--warmup-steps", "fit.warmup_steps", {"type": integer(0, 10**12), "help": "linear lr warm-up steps (default 0)"}),
    ("--schedule", "fit.schedule", {"choices": ["constant", "cosine"], "help": "lr after the warm-up (default constant)"}),
    ("--device", "fit.device", {"help": "auto | cpu | cuda | cuda:N"}),
    ("--nan-policy", "fit.nan_policy", {"choices": NAN_POLICIES, "help": "NaN/Inf features (default error)"}),
]
TRANSFORM_SHORTCUTS = [
    ("--chunk-size", "transform.chunk_size", {"type": integer(1), "help": "snippets per forward pass (default 8192)"}),
    ("--device", "transform.device", {"help": "auto | cpu | cuda | cuda:N"}),
    ("--nan-policy", "transform.nan_policy", {"choices": NAN_POLICIES,
                                              "help": "NaN/Inf features: fail (default), replace by 0, or skip the video"}),
]


def register(subparsers) -> None:
    """Add the core subcommands to the `sola` parser."""
    synth = add_command(subparsers, "synth", run_synth, threads=False)
    synth.add_argument("out", help="output directory (features/ and annotations.json)")
    add_config_arguments(synth, "synthetic-benchmark config (section synth: sola.data.synthetic.SyntheticConfig)",
                         "synth.motion_scale=1.0", SYNTH_SHORTCUTS)

    train = add_command(subparsers, "train", run_train)
    add_store_arguments(train)
    train.add_argument("--out", metavar="RUN_DIR", help="run directory (config, metrics, checkpoints)")
    add_resume_argument(train)
    add_config_arguments(train, "SoLa config over the reference defaults", "fit.lr=1e-4", FIT_SHORTCUTS)
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    transform = add_command(subparsers, "transform", run_transform)
    add_store_arguments(transform)
    transform.add_argument("--adapter", default=None, help="adapter .safetensors or a run directory (or --smooth)")
    transform.add_argument("--smooth", type=integer(1), default=None, metavar="K",
                           help="instead of an adapter, the smoothing control: each snippet replaced by the "
                           "weighted mean of K snippets (odd; the adapter's receptive field is 5) centred on it, "
                           "zero-padded at the ends as the adapter's conv")
    transform.add_argument("--smooth-kernel", choices=["box", "gaussian"], default=None,
                           help="with --smooth: equal weights (box, default) or a Gaussian of sigma (K - 1) / 4 taps")
    transform.add_argument("--dilation", type=integer(1), default=None, metavar="D",
                           help="with --smooth: snippets between the K taps (default 1, the adapter's)")
    transform.add_argument("--out", required=True, help="new store, same layout as FEATURES")
    transform.add_argument("--write-identity", action="store_true",
                           help="write --out even when the adapter is the identity (gate 0, e.g. a run whose "
                           "selection kept the identity): a copy of FEATURES; by default nothing is written")
    add_config_arguments(transform, "SoLa config (its transform section)", "transform.chunk_size=4096",
                         TRANSFORM_SHORTCUTS)
    transform.add_argument("--quiet", action="store_true", help="no progress bar")

    demo = add_command(subparsers, "demo", run_demo)
    demo.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    demo.add_argument("--videos", metavar="DIR", default=None,
                      help="run on the videos in DIR (I3D extraction first) instead of the synthetic benchmark")
    demo.add_argument("--annotations", default=None, help="with --videos: ground truth to draw in the pictures")
    demo.add_argument("--fps", type=POSITIVE, default=None, help="with --videos: resample videos to this frame rate")
    demo.add_argument("--num-videos", type=integer(1, 10**6), default=None, help="synthetic videos (default 200)")
    add_config_arguments(demo, "SoLa config over the demo's schedule", "fit.steps=200",
                         [("--epochs", "fit.epochs", {"type": integer(1), "help": "fit epochs instead of the demo's "
                                                      "step budget"})])
    demo.add_argument("--quiet", action="store_true", help="no progress bars")


def run_synth(args: argparse.Namespace) -> int:
    """write a seeded synthetic untrimmed-video benchmark"""
    from sola.data.synthetic import SynthSections, write_synthetic

    check_outputs({"OUT": [args.out, f"{args.out}/features", f"{args.out}/annotations.json"]},
                  {"--config": args.config})
    check_output_dir(args.out, "output")
    config = SynthSections.load(args.config, config_overrides(args)).synth
    summary = write_synthetic(args.out, config)
    print(
        f"wrote {summary['videos']} videos ({summary['snippets']} snippets, dim {summary['dim']}, "
        f"{summary['segments']} actions) to {summary['features']} and {summary['annotations']}"
    )
    return 0


def run_train(args: argparse.Namespace) -> int:
    """fit a SoLa adapter by Similarity Matching (no labels)"""
    from sola.adapt.fit import fit_adapter, resume_config
    from sola.core.config import load_config
    from sola.core.runs import metrics_summary

    overrides = config_overrides(args)
    run_dir = resume_dir(args)
    check_outputs({"--out" if args.out else "--resume": run_dir},
                  {"the input store FEATURES": args.features, "--config": args.config})
    check_output_dir(run_dir)
    if args.resume:  # the command that started the run, --resume added, is accepted
        config = resume_config(run_dir, args.config, overrides)
    else:
        config = load_config(args.config, overrides)
    store = store_from_args(args)
    fit_adapter(store, config, run_dir, resume=bool(args.resume), progress=not args.quiet)
    if is_main_process():
        summary = metrics_summary(run_dir)
        if summary:
            print(
                f"trained {summary['epochs']} epochs ({summary['steps']} steps, {summary['seconds']:.1f} s): "
                f"loss {summary['first_loss']:.4f} -> {summary['last_loss']:.4f}, "
                f"gate tanh(alpha) = {summary['gate']:+.4f}; adapter in {run_dir}/adapter.safetensors"
            )
            health = summary.get("health") or {}
            if health.get("finite"):
                print(f"feature health: departure {health['departure']:.3f}, effective rank x{health['rank_ratio']:.2f} "
                      f"and angular spread x{health['spread_ratio']:.2f} of the original features")
            if summary.get("constant_map"):
                print("note: the loss sits at the loss of a constant similarity map: the objective is learning "
                      "little on these features; `sola select` keeps the identity when no checkpoint helps")
    return 0


def run_transform(args: argparse.Namespace) -> int:
    """apply an adapter (or the smoothing control) to every video of a store

    Writes FEATURES transformed by the adapter to --out, in the layout and dtype of FEATURES, resumably,
    with a provenance record. `--smooth K` (no --adapter) writes the smoothing control instead: the
    features convolved along time with a fixed normalised kernel of K taps (--smooth-kernel box or
    gaussian, --dilation D), zero-padded at the ends exactly as the adapter's conv, e.g.
    `sola transform FEATURES --smooth 5 --out FEATURES_smooth` for the adapter's receptive field; train
    your head on it beside the SoLa features to see whether SoLa is more than smoothing. An identity adapter
    (gate tanh(alpha) = 0: untrained, or the best.safetensors of a run whose selection kept the identity)
    would write a copy of FEATURES: one note says so and nothing is written, unless --write-identity.
    """
    from sola.adapt.transform import transform_store
    from sola.core.config import load_config

    check_outputs({"--out": [args.out, f"{args.out}.sola_transform.json"]},
                  {"the input store FEATURES": args.features, "--adapter": args.adapter, "--config": args.config})
    settings = load_config(args.config, config_overrides(args)).transform
    smoothing = _smoothing(args)
    if smoothing is None:
        from sola.adapt.adapter import load_adapter

        adapter = load_adapter(args.adapter)
    store = store_from_args(args)
    if smoothing is not None:
        from sola.adapt.controls import TemporalSmoother

        adapter = TemporalSmoother(store.dim(), smoothing)
    summary = transform_store(adapter, store, args.out, chunk_size=settings.chunk_size, device=settings.device,
                              progress=not args.quiet, nan_policy=settings.nan_policy,
                              skip_identity=not args.write_identity)
    if summary["out"] is None:
        if is_main_process():
            from sola.adapt.adapter import resolve_adapter_path

            what = (f"--smooth {args.smooth} (one tap)" if smoothing is not None else
                    f"the adapter {resolve_adapter_path(args.adapter)} (gate tanh(alpha) = 0: untrained, or the "
                    "identity that checkpoint selection kept)")
            print(f"sola transform: note: {what} is the identity: the output would equal FEATURES "
                  f"{args.features}, so nothing was written to {args.out}; use FEATURES as they are, or give "
                  "--write-identity for a copy", file=sys.stderr)
        return 0
    if is_main_process():
        dropped = f", {summary['dropped']} dropped for NaN/Inf" if summary["dropped"] else ""
        if summary.get("redone"):  # finished outputs that no longer read back (truncated, replaced)
            dropped += f", {summary['redone']} redone: their output was damaged, e.g. {summary['damaged']}"
        print(
            f"transformed {summary['written']} videos ({summary['skipped']} already done{dropped}) of "
            f"{summary['videos']} in {summary['seconds']:.1f} s -> {summary['out']}"
        )
    return 0


def _smoothing(args: argparse.Namespace):
    """The `SmoothConfig` of --smooth (None for --adapter); `ConfigError` unless exactly one of them is given."""
    from sola.core.errors import ConfigError

    smoothing = args.smooth is not None
    if smoothing == (args.adapter is not None):
        raise ConfigError("give --adapter (a SoLa adapter) or --smooth K (the smoothing control), "
                          + ("not both" if smoothing else "one of them"))
    if not smoothing:
        if args.smooth_kernel is not None or args.dilation is not None:
            raise ConfigError("--smooth-kernel and --dilation go with --smooth K; an adapter has its own geometry")
        return None
    from sola.adapt.controls import SmoothConfig

    chosen = {"kernel_size": args.smooth, "kernel": args.smooth_kernel, "dilation": args.dilation}
    return SmoothConfig(**{k: v for k, v in chosen.items() if v is not None}).validate()


def run_demo(args: argparse.Namespace) -> int:
    """synthetic (or your) videos -> fit SoLa -> transform -> TSM pictures -> probe table"""
    from sola.experiments.demo import run_demo as demo

    check_outputs({"--out": args.out}, {"--videos": args.videos, "--annotations": args.annotations,
                                        "--config": args.config}, whole=["--out"], shallow=["--videos"])
    check_output_dir(args.out)
    demo(args.out, num_videos=args.num_videos, videos_dir=args.videos, annotations=args.annotations, fps=args.fps,
         progress=not args.quiet, config=args.config, overrides=config_overrides(args))
    return 0
