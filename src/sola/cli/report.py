"""`sola report`: one self-contained HTML page (and a Markdown twin) of a run or a comparison."""

from __future__ import annotations

import argparse
from pathlib import Path

from sola.cli.common import add_command
from sola.core.paths import check_outputs, run_files
from sola.core.runs import RECORD, read_json


def register(subparsers) -> None:
    """Add `sola report` to the `sola` parser."""
    p = add_command(subparsers, "report", run_report, threads=False)
    p.add_argument("directory", metavar="RUN_OR_COMPARE_DIR",
                   help="a `sola train` or `sola tal train` run directory or a `sola compare` output directory")
    p.add_argument("--out", default=None, metavar="REPORT.html",
                   help="the HTML page to write (default RUN_OR_COMPARE_DIR/report.html); its Markdown twin "
                   "REPORT.md and its pictures REPORT_files/ go beside it")


def run_report(args: argparse.Namespace) -> int:
    """Write one self-contained HTML page (and a Markdown twin) of a train run or a comparison

    For a `sola train` run directory: its config, the loss, gate, departure and feature-health
    curves per epoch, the TSM of one video of the fitted store before and after the adapter, and
    the probe per checkpoint when selection ran. For a `sola compare` directory: the mAP table,
    per-class AP differences to the baseline, each mode's false-positive breakdown (DETAD) and
    detection timelines of a few videos. Pictures are inlined in the page (nothing is fetched from
    a network); the Markdown twin links them in a folder beside it. For a `sola tal train` run: what the head
    was trained on, its losses and learning rate per epoch, its mAP where the run was scored, and its config.
    """
    from sola.viz.report import write_report

    # DIR is this command's own output folder by default: only its run files are protected there
    html = Path(args.out) if args.out else Path(args.directory) / "report.html"
    check_outputs({"--out": [html, html.with_suffix(".md"), html.with_name(f"{html.stem}_files")]},
                  {**run_files(args.directory),
                   "the store the run was fitted on": _recorded(args.directory, RECORD, "features"),
                   "the annotations of the comparison": _recorded(args.directory, "compare.json", "annotations")})
    written = write_report(args.directory, args.out)
    print(f"report: {written['html']} (Markdown twin: {written['markdown']}, pictures in {written['images']})")
    return 0


def _recorded(directory, name: str, key: str) -> str | None:
    """A path recorded in DIRECTORY/NAME under KEY (the fitted store of a run, the annotations of a
    comparison), or None."""
    record = read_json(Path(directory) / name)
    value = record.get(key) if isinstance(record, dict) else None
    return value if isinstance(value, str) else None
