"""Arguments shared by several subcommands: how to open a feature store and its annotations."""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import math
import os
from pathlib import Path

from sola.data.annotations import BAD_SEGMENT_POLICIES, DEFAULT_BAD_SEGMENTS, FORMATS, load_annotations
from sola.data.stores import LAYOUTS, command_line_options, open_store


def add_command(subparsers, name: str, func, help: str | None = None,
                description: str | None = None, threads: bool = True) -> argparse.ArgumentParser:
    """Add subcommand `name` that runs `func(args)`. Its `--help` texts default to `func`'s docstring:
    the first paragraph is the one-line help, the rest the description. `threads`: the command uses torch, so it
    takes `--threads` and `sola.cli.main` sets torch's thread count before it runs (`sola.core.threads`)."""
    summary, _, rest = inspect.cleandoc(func.__doc__ or "").partition("\n\n")
    help = help if help is not None else " ".join(summary.split())
    description = description if description is not None else " ".join(rest.split()) or help
    parser = subparsers.add_parser(name, help=help, description=description)
    parser.set_defaults(func=func)
    if threads:
        parser.add_argument("--threads", type=integer(1, 1024), default=None, metavar="N",
                            help="torch CPU threads (default: $SOLA_THREADS, else the cores not busy with other "
                                 "work when the command starts; see docs/cli.md, Threads)")
    return parser


def integer(minimum: int, maximum: int = 2**31 - 1):
    """An argparse type: an integer in [`minimum`, `maximum`] (so that 0 or -5 never silently mean something else,
    and a huge value is refused before it allocates or overflows). `1e6` is read as 1000000; `2.5` is refused."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                number = math.nan
            if not number.is_integer():
                raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
            value = int(number)
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"must be an integer between {minimum} and {maximum}, got {text}")
        return value

    convert.__name__ = "integer"
    return convert


SEED = integer(0, 2**32 - 1)  # every --seed: what numpy, torch and Python's random all take


def number(minimum: float = -math.inf, maximum: float = math.inf, above: bool = False):
    """An argparse type: a finite number in [minimum, maximum] (> minimum when `above`)."""

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        low = value > minimum if above else value >= minimum
        if not (math.isfinite(value) and low and value <= maximum):
            bounds = [f"{'>' if above else '>='} {minimum:g}"] if math.isfinite(minimum) else []
            bounds += [f"<= {maximum:g}"] if math.isfinite(maximum) else []
            raise argparse.ArgumentTypeError(" ".join(["must be a finite number", " and ".join(bounds)]).strip()
                                             + f", got {text}")
        return value

    convert.__name__ = "number"
    return convert


POSITIVE = number(0.0, above=True)  # seconds, rates, learning rates
NON_NEGATIVE = number(0.0)
FRACTION = number(0.0, 1.0)  # shares and chances


def check_output_dir(path: str | os.PathLike, flag: str = "--out") -> None:
    """Refuse, before any work, an output directory that cannot be written: a link to nothing or a
    file. Raises `ConfigError`."""
    from sola.cli import dangling_link_message
    from sola.core.errors import ConfigError

    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"{flag} {dangling_link_message(path)}")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: a file, not a directory; choose another output directory")


@contextlib.contextmanager
def cyclic_gc_paused():
    """Pause the cyclic garbage collector: an evaluation builds hundreds of thousands of small objects
    without cycles, which it would otherwise rescan (refcounting still frees them)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def add_store_arguments(parser: argparse.ArgumentParser, name: str = "features") -> None:
    """Add FEATURES, --layout and one flag per command-line option the registered layouts declare
    (--prefix, --suffix, --key; each help lists the layouts taking it)."""
    parser.add_argument(name, help="feature store: a directory of per-video files or one file")
    parser.add_argument(
        "--layout", default=None, help=f"force the layout ({', '.join(LAYOUTS)}) instead of detecting it",
    )
    for option, layouts in command_line_options().values():
        parser.add_argument(f"--{option.name.replace('_', '-')}", dest=option.name, type=option.type, default=None,
                            help=f"{option.help}; for {', '.join(layouts)}")


def store_options(args: argparse.Namespace) -> dict:
    """The layout options given on the command line (only those set)."""
    return {name: getattr(args, name) for name in command_line_options() if getattr(args, name, None) is not None}


def store_from_args(args: argparse.Namespace, name: str = "features"):
    """Open the feature store described by `add_store_arguments`."""
    return open_store(getattr(args, name), layout=args.layout, **store_options(args))


def add_annotation_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Add --annotations, --annotation-format (the registered formats), --metadata and --bad-segments."""
    parser.add_argument(
        "--annotations", required=required, default=None, metavar="ANN",
        help=f"annotation file ({', '.join(spec.title for spec in FORMATS.values())})",
    )
    parser.add_argument("--annotation-format", default=None, choices=list(FORMATS),
                        help="force the annotation format instead of detecting it")
    parser.add_argument("--metadata", default=None, help="TSP metadata CSV or BSN video_info CSV")
    parser.add_argument(
        "--bad-segments", default=DEFAULT_BAD_SEGMENTS, choices=list(BAD_SEGMENT_POLICIES),
        help="segments with end < start or outside the video: keep them as written (the default, as the official "
        "evaluators read them), clip them to the video, or refuse them (error); the output says how many there were",
    )


def add_covered_only_argument(parser: argparse.ArgumentParser) -> None:
    """Add --covered-only: score only the ground-truth videos that the predictions cover."""
    parser.add_argument("--covered-only", action="store_true",
                        help="score only the ground-truth videos that have predictions (default: every video of "
                        "the subset counts, as in the official evaluator, and those without predictions are misses)")


def annotations_from_args(args: argparse.Namespace):
    """Load the annotations described by `add_annotation_arguments` (a `SolaNote` says how many segments
    `--bad-segments` kept or clipped); raises `AnnotationError`."""
    return load_annotations(args.annotations, args.annotation_format, args.metadata, bad_segments=args.bad_segments)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable --set SECTION.KEY=VALUE config override."""
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config value, e.g. --set train.epochs=5 (repeatable)")


def set_overrides(pairs: list[str]) -> dict:
    """`["train.epochs=5"]` -> `{"train.epochs": 5}` (values parsed as YAML); raises `ConfigError`."""
    import yaml

    from sola.core.errors import ConfigError

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {pair!r}: write SECTION.KEY=VALUE, e.g. --set train.epochs=5")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            from sola.core.config import yaml_problem

            raise ConfigError(f"--set {pair[:80]!r}: the value is not valid YAML ({yaml_problem(exc)})") from None
        except RecursionError:
            raise ConfigError(f"--set {pair[:80]!r}...: the value nests too deeply to be a config value") from None
    return out


def add_config_arguments(parser: argparse.ArgumentParser, what: str, example: str,
                         shortcuts: list[tuple[str, str, dict]] = ()) -> None:
    """The one config pattern of every subcommand: `--config FILE`, repeatable `--set KEY=VALUE`, and
    named flags as shortcuts for single keys.

    `what` names the config (e.g. "SoLa YAML config, over the reference defaults"); `example` is a
    `--set` example; each shortcut is `(flag, dotted key, argparse options)` and is stored under its
    dotted key (see `config_overrides`).
    """
    parser.add_argument("--config", default=None, metavar="FILE", help=f"{what} (a YAML file or a configs/ name)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help=f"override one config value, e.g. --set {example} (repeatable; named flags win)")
    for flag, key, options in shortcuts:
        options = dict(options)
        help_text = options.pop("help", "")
        if "choices" not in options and "action" not in options:
            options.setdefault("metavar", flag.lstrip("-").replace("-", "_").upper())
        parser.add_argument(flag, dest=key, default=None, **options,
                            help=f"{help_text} (= --set {key}=...)".strip())


def config_overrides(args: argparse.Namespace) -> dict:
    """The dotted overrides a command line gives: its `--set` pairs, then the named flags that were given."""
    overrides = set_overrides(getattr(args, "set", []) or [])
    overrides.update({key: value for key, value in vars(args).items() if "." in key and value is not None})
    return overrides


def add_resume_argument(parser: argparse.ArgumentParser) -> None:
    """`--resume [RUN_DIR]`, the same in `sola train` and `sola tal train`."""
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="RUN_DIR",
                        help="continue the run in --out (or in RUN_DIR) from its last finished epoch, with its own "
                        "config; a finished run is not retrained")


def resume_dir(args: argparse.Namespace) -> Path:
    """The run directory of a command with `--out` and `--resume [RUN_DIR]`; raises `ConfigError`."""
    from sola.core.errors import ConfigError

    named = args.resume if isinstance(args.resume, str) else None
    if named and args.out and Path(args.out).resolve() != Path(named).resolve():  # ./run, run/, /abs/run: one
        raise ConfigError("--resume RUN_DIR continues RUN_DIR; drop --out or give the same directory")
    if not (named or args.out):
        raise ConfigError("give --out RUN_DIR (and --resume to continue the run there)")
    return Path(named or args.out)
