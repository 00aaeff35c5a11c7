"""Render a `Report` as one self-contained HTML page and its Markdown twin, and write both atomically.

The page inlines every picture as a base64 `data:` URI and its CSS, and fetches nothing: it opens
offline, mailed or archived as one file. The Markdown twin (`NAME.md` beside `NAME.html`) links the
same pictures as PNG files in the folder `NAME_files/` beside it. Templates are jinja2 files shipped
in `sola/report/templates`; the HTML is autoescaped.
"""

from __future__ import annotations

import base64
import os
import time
from functools import lru_cache
from pathlib import Path

from sola import __version__
from sola.core.atomic import atomic_write_text
from sola.core.errors import CheckpointError, ConfigError
from sola.core.runs import HEAD_RUN, run_kind
from sola.viz.report.compare import compare_report, is_compare_dir
from sola.viz.report.document import Report
from sola.viz.report.head import head_report
from sola.viz.report.train import is_train_run, train_report

REPORT = "report.html"


@lru_cache(maxsize=1)
def _environment():
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("sola.viz.report", "templates"), undefined=StrictUndefined,
                      autoescape=select_autoescape(["html"], default_for_string=True, default=False),
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["data_uri"] = data_uri
    env.filters["md_cell"] = markdown_cell
    env.filters["code_spans"] = code_spans
    return env


def data_uri(path: str | os.PathLike) -> str:
    """`data:image/png;base64,...` of a PNG file."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def markdown_cell(text) -> str:
    """Text safe inside a Markdown table cell: pipes escaped, line breaks as spaces."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def code_spans(text: str) -> list[tuple[str, bool]]:
    """`"a `b` c"` -> `[("a ", False), ("b", True), (" c", False)]`: the parts of a note, code or not."""
    return [(part, index % 2 == 1) for index, part in enumerate(str(text).split("`")) if part]


def report_kind(path: str | os.PathLike) -> str:
    """"train" for a `sola train` run directory, "head" for a `sola tal train` run, "compare" for a `sola compare`
    directory.

    Raises `CheckpointError` naming what was expected for a missing directory or one of neither kind.
    """
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory; give a `sola train` or `sola tal train` run directory or "
                              "a `sola compare` output directory")
    if is_compare_dir(path):
        return "compare"
    if run_kind(path) == HEAD_RUN:
        return "head"
    if is_train_run(path):
        return "train"
    raise CheckpointError(f"{path}: neither a `sola train` run directory (config.yaml with run.json or "
                          "checkpoints/), a `sola tal train` run (weights.safetensors, config.yaml, classes.json) nor "
                          "a `sola compare` directory (compare.json); give one of those")


def build_report(path: str | os.PathLike, images: str | os.PathLike) -> Report:
    """The `Report` of a run or compare directory; its figures are written to the folder `images`."""
    builder = {"compare": compare_report, "head": head_report, "train": train_report}[report_kind(path)]
    return builder(Path(path), Path(images))


def report_paths(path: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, Path, Path]:
    """`(HTML page, Markdown twin, pictures folder)` of the report of `path` (default `path/report.html`).

    Raises `ConfigError` when `out` is not an `.html` file path.
    """
    html = Path(out) if out is not None else Path(path) / REPORT
    if html.suffix.lower() not in (".html", ".htm") or html.is_dir():
        raise ConfigError(f"--out {html}: give the path of an .html file (its .md twin and pictures go beside it)")
    return html, html.with_suffix(".md"), html.with_name(f"{html.stem}_files")


def write_report(path: str | os.PathLike, out: str | os.PathLike | None = None) -> dict[str, Path]:
    """Write the report of a run or compare directory: `{"html", "markdown", "images"}` paths.

    `out`: the HTML page (default `path/report.html`); the Markdown twin and the pictures folder go
    beside it (`report_paths`). Every file is written atomically; pictures of an earlier report in
    that folder that this one does not draw are removed. Raises `CheckpointError` (not a run or
    compare directory), `ConfigError` (a bad `out`).
    """
    html, markdown, images = report_paths(path, out)
    report = build_report(path, images)
    drawn = {figure.path.resolve() for figure in report.figures()}
    context = {"report": report, "version": __version__, "written": time.strftime("%Y-%m-%d %H:%M %Z"),
               "images": os.path.relpath(images, markdown.parent)}
    env = _environment()
    atomic_write_text(html, env.get_template("report.html").render(context))
    atomic_write_text(markdown, env.get_template("report.md").render(context))
    for stale in images.glob("*.png") if images.is_dir() else ():
        if stale.resolve() not in drawn:
            stale.unlink(missing_ok=True)
    return {"html": html, "markdown": markdown, "images": images}
