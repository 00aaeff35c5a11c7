"""Core subcommands: synth, train, transform, demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from sola.adapter import load_adapter
from sola.cli.common import POSITIVE, add_store_arguments, check_output_dir, integer, store_from_args
from sola.config import TransformConfig, load_config
from sola.demo import run_demo as demo
from sola.devices import is_main_process
from sola.errors import ConfigError
from sola.fit import fit_adapter, load_run_config, metrics_summary
from sola.synthetic import SyntheticConfig, write_synthetic
from sola.transform import transform_store


def register(subparsers) -> None:
    """Add the core subcommands to the `sola` parser."""
    synth = subparsers.add_parser("synth", help="write a seeded synthetic untrimmed-video benchmark")
    synth.add_argument("out", help="output directory (features/ and annotations.json)")
    synth.add_argument("--videos", type=integer(1), default=200)
    synth.add_argument("--dim", type=integer(1), default=256, help="feature dimension C")
    synth.add_argument("--classes", type=integer(1), default=10)
    synth.add_argument("--seed", type=integer(0), default=0)
    synth.set_defaults(func=run_synth)

    train = subparsers.add_parser("train", help="fit a SoLa adapter by Similarity Matching (no labels)")
    add_store_arguments(train)
    train.add_argument("--out", help="run directory (config, metrics, checkpoints)")
    train.add_argument("--config", help="YAML config overriding the reference defaults")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    train.add_argument("--epochs", type=integer(1))
    train.add_argument("--seed", type=integer(0))
    train.add_argument("--batch-size", type=integer(1))
    train.add_argument("--lr", type=POSITIVE)
    train.add_argument("--windows-per-video", type=integer(1), help="training windows per video per epoch")
    train.add_argument("--checkpoint-every", type=integer(1), help="epochs between checkpoints (default 10)")
    train.add_argument("--steps", type=integer(0), help="optimiser steps in all (overrides --epochs; 0: use epochs)")
    train.add_argument("--warmup-steps", type=integer(0), help="linear lr warm-up steps (default 0)")
    train.add_argument("--schedule", choices=["constant", "cosine"], help="lr after the warm-up (default constant)")
    train.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    train.add_argument("--nan-policy", choices=["error", "zero", "drop-video"], help="NaN/Inf features (default error)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=run_train)

    transform = subparsers.add_parser("transform", help="apply an adapter to every video of a store")
    add_store_arguments(transform)
    transform.add_argument("--adapter", required=True, help="adapter .safetensors or a run directory")
    transform.add_argument("--out", required=True, help="new store, same layout as FEATURES")
    transform.add_argument("--chunk-size", type=integer(1), default=None,
                           help="snippets per forward pass (default 8192)")
    transform.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    transform.add_argument("--nan-policy", choices=["error", "zero", "drop-video"], default="error",
                           help="NaN/Inf features: fail (default), replace by 0, or skip the video")
    transform.add_argument("--quiet", action="store_true", help="no progress bar")
    transform.set_defaults(func=run_transform)

    demo = subparsers.add_parser(
        "demo", help="synthetic (or your) videos -> fit SoLa -> transform -> TSM pictures -> probe table"
    )
    demo.add_argument("--out", default="demo_out", help="output directory (default demo_out)")
    demo.add_argument("--videos", metavar="DIR", default=None,
                      help="run on the videos in DIR (I3D extraction first) instead of the synthetic benchmark")
    demo.add_argument("--annotations", default=None, help="with --videos: ground truth to draw in the pictures")
    demo.add_argument("--fps", type=POSITIVE, default=None, help="with --videos: resample videos to this frame rate")
    demo.add_argument("--num-videos", type=integer(1), default=None, help="synthetic videos (default 200)")
    demo.add_argument("--epochs", type=integer(1), default=None, help="fit epochs (default: the demo schedule)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=run_demo)


def run_synth(args: argparse.Namespace) -> int:
    check_output_dir(args.out, "output")
    config = SyntheticConfig(videos=args.videos, dim=args.dim, classes=args.classes, seed=args.seed)
    summary = write_synthetic(args.out, config)
    print(
        f"wrote {summary['videos']} videos ({summary['snippets']} snippets, dim {summary['dim']}, "
        f"{summary['segments']} actions) to {summary['features']} and {summary['annotations']}"
    )
    return 0


def run_train(args: argparse.Namespace) -> int:
    overrides = {
        "fit.epochs": args.epochs,
        "fit.seed": args.seed,
        "fit.batch_size": args.batch_size,
        "fit.lr": args.lr,
        "fit.windows_per_video": args.windows_per_video,
        "fit.steps": args.steps,
        "fit.checkpoint_every": args.checkpoint_every,
        "fit.warmup_steps": args.warmup_steps,
        "fit.schedule": args.schedule,
        "fit.device": args.device,
        "fit.nan_policy": args.nan_policy,
    }
    if args.resume:
        if args.out and args.out != args.resume:
            raise ConfigError("--resume RUN_DIR continues RUN_DIR; drop --out or give the same directory")
        if args.config or any(v is not None for k, v in overrides.items() if k not in ("fit.epochs", "fit.device")):
            raise ConfigError("a resumed run keeps its own config.yaml; only --epochs and --device may change")
        config = load_run_config(args.resume, args.epochs)
        if args.device:
            config.fit.device = args.device
        run_dir = args.resume
    else:
        if not args.out:
            raise ConfigError("give --out RUN_DIR (or --resume RUN_DIR)")
        check_output_dir(args.out)
        config = load_config(args.config, overrides)
        run_dir = args.out
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
    defaults = TransformConfig()
    adapter = load_adapter(args.adapter)
    store = store_from_args(args)
    summary = transform_store(
        adapter,
        store,
        args.out,
        chunk_size=defaults.chunk_size if args.chunk_size is None else args.chunk_size,
        device=args.device or defaults.device,
        progress=not args.quiet,
        nan_policy=args.nan_policy,
    )
    if is_main_process():
        dropped = f", {summary['dropped']} dropped for NaN/Inf" if summary["dropped"] else ""
        print(
            f"transformed {summary['written']} videos ({summary['skipped']} already done{dropped}) of "
            f"{summary['videos']} in {summary['seconds']:.1f} s -> {summary['out']}"
        )
    return 0


def run_demo(args: argparse.Namespace) -> int:
    demo(args.out, num_videos=args.num_videos, epochs=args.epochs, videos_dir=args.videos,
         annotations=args.annotations, fps=args.fps, progress=not args.quiet)
    return 0
