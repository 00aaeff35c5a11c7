"""`sola cost`: the measured cost table of the SoLa adapter against fine-tuning the snippet encoder."""

from __future__ import annotations

import argparse

from sola.cli.common import add_command, integer
from sola.core.devices import resolve_device
from sola.core.paths import check_outputs
from sola.core.runs import write_json


def register(subparsers) -> None:
    """Add `sola cost` to the `sola` parser."""
    p = add_command(subparsers, "cost", run_cost)
    p.add_argument("--dim", type=integer(1), required=True, help="feature dimension C (I3D: 1024 RGB, 2048 two-stream)")
    p.add_argument("--hidden", type=integer(1), default=512, help="adapter hidden width H (default 512)")
    p.add_argument("--kernel", type=integer(1), default=5, help="temporal kernel size k, odd (default 5)")
    p.add_argument("--dilation", type=integer(1), default=1, help="temporal dilation (default 1)")
    p.add_argument("--batch-size", type=integer(1), default=256, help="training windows per adapter step (default 256)")
    p.add_argument("--frames", type=integer(1), default=16, help="frames per encoder clip (default 16)")
    p.add_argument("--size", type=integer(32), default=224, help="encoder crop size (default 224)")
    p.add_argument("--repeats", type=integer(1, 1000), default=5, help="timed adapter steps (median; default 5)")
    p.add_argument("--encoder-repeats", type=integer(1, 1000), default=1, help="timed encoder steps (default 1: slow on a CPU)")
    p.add_argument("--no-encoder", action="store_true", help="the adapter rows only")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the CPU, and CUDA too when present)")
    p.add_argument("--json", default=None, metavar="OUT", help="also write the rows as JSON (atomically)")


def run_cost(args: argparse.Namespace) -> int:
    """measured cost of the SoLa adapter against fine-tuning the I3D encoder (TSP/BSP/PAL style)

    Parameters, FLOPs per snippet (torch.utils.flop_counter), activation and peak training memory and seconds per
    1,000 training windows of the SoLa adapter (Similarity Matching, AdamW), and of fine-tuning our Kinetics-400
    Inception-I3D on the same snippets (one 16-frame clip per snippet, forward + backward). Measured here, on the
    CPU and on CUDA when present.
    """
    import torch

    from sola.experiments.cost import adapter_cost, encoder_cost, format_cost_table

    check_outputs({"--json": args.json}, {})  # no input file yet: here for the day one is added
    if args.device is not None:
        devices = [resolve_device(args.device)]
    else:
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        rows.append(adapter_cost(args.dim, args.hidden, args.kernel, args.dilation, batch=args.batch_size,
                                 device=device, repeats=args.repeats))
        if not args.no_encoder:
            rows.append(encoder_cost(args.frames, args.size, device=device, repeats=args.encoder_repeats))
    print(format_cost_table(rows))
    if args.json:
        write_json(args.json, [row.to_dict() for row in rows])
    return 0
