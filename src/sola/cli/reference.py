"""The CLI reference (docs/cli.md), generated from the `sola` parsers so that it cannot drift from them.

Regenerate with `python -m sola.cli.reference > docs/cli.md` (or `make docs`); `tests/test_docs.py`
fails when docs/cli.md differs from `cli_reference()`.
"""

from __future__ import annotations

import argparse

# Usage lines are wrapped at this width whatever the terminal, so the output is the same everywhere.
USAGE_WIDTH = 100

HEADER = """\
# CLI reference

Every `sola` command, its usage, its description and its arguments, generated from the parsers.
Back to the [README](../README.md).

This page is generated: do not edit it by hand. Regenerate it with
`python -m sola.cli.reference > docs/cli.md` (or `make docs`); `tests/test_docs.py` fails when it differs
from the parsers. `sola COMMAND --help` prints the same information.

## Conventions

Every command prints one line and exits with status 2 on bad input (a missing or corrupt file, a bad
config value, an inconsistent store), naming the file and the fix.

**Settings follow one pattern:** `--config FILE` (a YAML file of sections, or the name of a shipped config),
then repeatable `--set SECTION.KEY=VALUE`, then named flags, which are shortcuts for single keys (`sola train
--lr 1e-4` is `--set fit.lr=1e-4`). `sola compare --set` sends each key to the config that has its section
(TAL: `data`, `model`, `train`, `test`; SoLa: `adapter`, `matching`, `fit`, `transform`). `--resume` is the
same in `sola train` and `sola tal train`: `--out RUN --resume`, or `--resume RUN`.

Feature-store options shared by all commands that read features: `--layout`, `--prefix`, `--suffix`, `--key`.
Annotation options shared by all commands that read annotations: `--annotations`, `--annotation-format`,
`--metadata`, `--bad-segments keep|clip|error` (default keep everywhere). The evaluators (`eval-detection`,
`eval-proposals`, `tal eval`, `show`) also take `--covered-only`.

**Light commands.** `sola --help`, `inspect`, `eval-detection`, `eval-proposals`, `tal eval`, `show`, `synth`,
`splice` and `report` of a comparison (and every `--help`) never import torch: `sola COMMAND` imports only the
command-line module of its command, and those modules import the heavy library modules inside the commands that
need them (`tests/test_cli_light.py` runs each in a fresh process and checks `sys.modules`). The others need torch
for their work; so does `sola report` of a train run, whose TSM picture applies the adapter (a comparison's report
reads only `sola.experiments.compare_table`). Whole-process seconds: [Benchmarks](benchmarks.md).

Multi-process: `torchrun --nproc_per_node N -m sola train|transform|tal train|tal infer|compare ...`
(see [Fitting](fitting.md#multi-gpu-and-multi-node-torchrun)).

**Threads.** The commands that use torch take `--threads N`. Without it they use `$SOLA_THREADS` when set, torch's
own choice when `OMP_NUM_THREADS` or `MKL_NUM_THREADS` is set (as torchrun sets it for its ranks), and otherwise the
cores that other work leaves idle when the command starts (measured over 0.1 s from `/proc/stat`; at least one),
with one `note:` line when that is fewer than the cores. Torch's own default, one thread per core, waits for cores
it does not get: beside one busy process on 2 cores it made the demo many times slower
(`benchmarks/demo_threads.py`, figures in [Benchmarks](benchmarks.md)). A process that starts after the command
is not seen: pass `--threads 1` on a machine that others share.
"""


def cli_reference() -> str:
    """Markdown for every `sola` command: usage, description and a table of its arguments."""
    from sola.cli import build_parser

    parser = build_parser()
    commands = list(_walk(parser, None))
    lines = [HEADER, "## Commands", ""]
    for name, _, summary in commands[1:]:
        lines.append(f"- [`{name}`](#{_slug(name)}): {' '.join(summary.split())}" if summary else f"- [`{name}`](#{_slug(name)})")
    lines.append("")
    for name, sub, summary in commands:
        lines.extend(_command(name, sub, summary))
    return "\n".join(lines).rstrip("\n") + "\n"


def _walk(parser: argparse.ArgumentParser, summary: str | None):
    """(name, parser, one-line help) of `parser` and of every subcommand beneath it, depth first."""
    yield parser.prog, parser, summary
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield from _walk(sub, helps.get(name))


def _command(name: str, parser: argparse.ArgumentParser, summary: str | None) -> list[str]:
    formatter = argparse.HelpFormatter(parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    usage = formatter.format_help().strip("\n")
    out = [f"## {name}", "", "```", usage, "```", ""]
    description = parser.description or summary
    if description:
        out += [" ".join(description.split()), ""]
    rows = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                rows.append((f"`{choice.dest}`", "", f"subcommand: {choice.help or ''} ([`{parser.prog} "
                             f"{choice.dest}`](#{_slug(parser.prog + ' ' + choice.dest)}))"))
            continue
        flags = formatter._format_action_invocation(action)
        rows.append((f"`{flags}`", _default(action), _help(formatter, action)))
    if rows:
        out += ["| argument | default | help |", "|---|---|---|"]
        out += [f"| {_cell(flag)} | {_cell(default)} | {_cell(text)} |" for flag, default, text in rows]
        out.append("")
    return out


def _default(action: argparse.Action) -> str:
    """The parser's default, shown when it is a value (None, False and [] mean: the config's or nothing)."""
    if isinstance(action, argparse._VersionAction):
        return ""
    value = action.default
    if value is None or value is argparse.SUPPRESS or value is False or value == []:
        return ""
    if isinstance(action, argparse._StoreTrueAction) and value is False:
        return ""
    return f"`{value}`"


def _help(formatter: argparse.HelpFormatter, action: argparse.Action) -> str:
    if not action.help:
        return ""
    try:
        return formatter._expand_help(action)
    except (KeyError, TypeError, ValueError):
        return action.help


def _cell(text: str) -> str:
    """One Markdown table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = "".join(ch for ch in heading.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


if __name__ == "__main__":
    import sys

    sys.stdout.write(cli_reference())
