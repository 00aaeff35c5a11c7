"""The `sola` command: thin wrappers that parse arguments, call the library and print.

Each area registers its subcommands from its own module (`sola.cli.<area>.register`), so the
command line grows without one large file. Any `SolaError`, a usage error, an `OSError` (a
permission, a full disk, a dangling link) or a `RecursionError` (an input nested too deeply) becomes one
line on stderr and exit 2; each `SolaWarning` (`SolaNote`) is one `warning:` (`note:`) line on stderr, every time.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import importlib
import os
import sys
import warnings

from sola import __version__
from sola.core.errors import SolaError, SolaNote, SolaWarning

# The module that adds each subcommand (each module defines `register(subparsers)`). `sola COMMAND ...`
# imports only its command's module, so that a light command starts fast; `sola --help` and an
# unknown command build the full parser. A test checks that this table names what the modules add.
COMMANDS = {
    **dict.fromkeys(("synth", "train", "transform", "demo"), "sola.cli.core"),
    **dict.fromkeys(("eval-detection", "eval-proposals", "probe", "select", "tsm"), "sola.cli.evaluate"),
    **dict.fromkeys(("inspect", "splice"), "sola.cli.data"),
    **dict.fromkeys(("extract", "classify"), "sola.cli.extract"),
    "cost": "sola.cli.cost",
    "tal": "sola.cli.tal",
    "detect": "sola.cli.detect",
    "compare": "sola.cli.compare",
    "ablate": "sola.cli.ablate",
    "report": "sola.cli.report",
    "show": "sola.cli.show",
}
COMMAND_MODULES = list(dict.fromkeys(COMMANDS.values()))  # in the order of `sola --help`


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line naming the flag (subparsers inherit it)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: of every subcommand, or only of those of `command`'s module when it is one."""
    parser = OneLineParser(
        prog="sola",
        description="SoLa (Soft-Landing): unsupervised temporal adapters for frozen video features.",
    )
    parser.add_argument("--version", action="version", version=f"sola {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [COMMANDS[command]] if command in COMMANDS else COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `sola` command; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # The top-level options take no value, so the first other word is the command.
    parser = build_parser(next((word for word in argv if not word.startswith("-")), None))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    command = " ".join(name for name in (args.command, getattr(args, "tal_command", None)) if name)
    return _run(args, command)


def _run(args: argparse.Namespace, command: str) -> int:
    """`args.func(args)`: its exit status, or 2 (130, 141) with one line on stderr for what `main` reports."""
    try:
        with warnings_as_notes(command):
            if hasattr(args, "threads"):  # a command that uses torch (`add_command(threads=True)`)
                _set_threads(args.threads)
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe (`sola inspect | head`) is reported here, not at exit
        return code
    except SolaError as exc:
        print(f"sola {command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `sola inspect | head`: the reader left; stop quietly like other tools
        _silence_stdout()
        return 141
    except OSError as exc:
        print(f"sola {command}: error: {os_error_message(exc)}", file=sys.stderr)
        return 2
    except RecursionError:  # the readers name the file; this is the net under every other input
        print(f"sola {command}: error: an input is too deeply nested to read (RecursionError); "
              "check the files and values given", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sola {command}: interrupted; rerun the same command (with --resume for training) to continue",
              file=sys.stderr)
        return 130


def _set_threads(requested: int | None) -> None:
    """Set torch's thread count (`sola.core.threads`); a note when other work leaves fewer cores than there are."""
    from sola.core.threads import usable_cores, use_threads

    count, reason = use_threads(requested)
    if "busy" in reason and count < usable_cores():
        warnings.warn(f"torch uses {count} thread{'s' if count > 1 else ''}: {reason} (--threads N or "
                      f"SOLA_THREADS=N to choose)", SolaNote, stacklevel=2)


@contextlib.contextmanager
def warnings_as_notes(command: str):
    """Print each warning raised while `command` runs as one plain line, once: `sola COMMAND: warning: ...` for a
    `SolaWarning` (the input changes what is computed), `sola COMMAND: note: ...` for a `SolaNote` and any other
    warning; never Python's `path/to/file.py:12: UserWarning: ...` with a source line."""
    shown = set()

    def line(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        kind = "warning" if issubclass(category, SolaWarning) and not issubclass(category, SolaNote) else "note"
        if (kind, text) not in shown:
            shown.add((kind, text))
            print(f"sola {command}: {kind}: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)  # each is shown (once, above), not once per process
        warnings.showwarning = line
        yield


_OS_ERROR_FIXES = {
    errno.EACCES: "permission denied; fix its permissions (chmod) or choose a path you can read and write",
    errno.EPERM: "operation not permitted; fix its permissions (chmod) or choose another path",
    errno.EROFS: "read-only file system; choose an output path on a writable disk",
    errno.ENOSPC: "no space left on the device; free some space or choose an output on another disk, then "
                  "rerun (finished files are kept, half-written ones are not)",
    errno.EDQUOT: "disk quota exceeded; free some space or choose an output on another disk, then rerun",
    errno.ENOENT: "does not exist (a missing folder, or a link to nothing?); fix the path",
    errno.EISDIR: "is a directory; give a file path",
    errno.ENOTDIR: "a part of this path is a file, not a directory; fix the path",
    errno.EEXIST: "already exists; remove it or choose another path",
    errno.ELOOP: "a loop of symbolic links; fix the link",
}


def os_error_message(exc: OSError) -> str:
    """One line for an `OSError`: the path it concerns and what to do about it."""
    if exc.filename and os.path.islink(exc.filename) and not os.path.exists(exc.filename):
        return dangling_link_message(exc.filename)
    path = f"{exc.filename}: " if exc.filename else ""
    # An OSError without errno (NumPy's short writes) has no strerror; str(exc) would read "[Errno None] None".
    text = exc.strerror or (str(exc.args[0]) if exc.args else type(exc).__name__)
    return path + _OS_ERROR_FIXES.get(exc.errno, text)


def dangling_link_message(path) -> str:
    """The message for a symbolic link whose target does not exist."""
    return f"{path}: a link to {os.readlink(path)}, which does not exist; remove the link or create its target"


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    try:
        sys.stdout.flush()
    except OSError:
        pass
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor (captured)
        pass
