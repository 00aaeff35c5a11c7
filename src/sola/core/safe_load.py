"""The one safe way to open an input file of each kind: pickles (restricted) and JSON (bounded).

Every pickle `sola` reads (feature stores, prediction files) goes through `load_pickle`, which admits only
NumPy arrays, dicts, lists, tuples, strings and numbers and refuses anything else, saying what it asked
for: loading a pickle can run code. Every JSON input goes through `parse_json`, which turns a document
nested too deeply for the parser into one error instead of a `RecursionError`; `read_json` first asks
`sola.core.inputs.input_file` (a missing file, a directory or a FIFO/device is refused before anything opens it).
`tests/test_hostile_predictions.py` greps `src/` so that no other module unpickles.

Light: NumPy and the standard library only.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Callable

from sola.core.errors import SolaError, UnsafePickleError
from sola.core.inputs import input_file

try:
    import orjson
except ImportError:  # optional speed: `json` gives the same values
    orjson = None

# The globals a pickle of NumPy arrays, dicts, lists and scalars needs (NumPy 1 and 2 names).
ALLOWED_GLOBALS = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 pickles store array bytes as latin-1 text
})
READS = "only NumPy arrays, dicts, lists and scalars are read"


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that admits only `ALLOWED_GLOBALS`; anything else raises `UnsafePickleError`
    naming `where`, what the pickle asked for and `fix`."""

    def __init__(self, handle, where: str, fix: str = "") -> None:
        super().__init__(handle, encoding="latin1")
        self.where, self.fix = where, fix

    def find_class(self, module: str, name: str):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self.where}: the pickle asks for {module}.{name}; {READS} (sola refuses it: loading a pickle "
            f"can run code){self.fix}"
        )

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.where}: the pickle uses persistent ids; {READS} (it can run code){self.fix}")


def load_pickle(file: str | os.PathLike, error: type[SolaError], fix: str = "") -> Any:
    """Unpickle `file` admitting only NumPy arrays, dicts, lists and scalars.

    `fix`: text appended to a refusal ("; re-save ..."). Raises `UnsafePickleError` for anything else
    the pickle asks for, `error` (naming the file) for a truncated, corrupt or unreadable one.
    """
    file = Path(file)
    try:
        with open(file, "rb") as handle:
            return RestrictedUnpickler(handle, str(file), fix).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            UnicodeDecodeError) as exc:
        raise error(f"{file}: not a readable pickle ({type(exc).__name__}: {exc}); it is truncated or corrupt: "
                    "re-download or re-create it") from None
    except RecursionError:
        raise error(f"{file}: the pickle is too deeply nested to read; {READS}") from None
    except MemoryError:
        raise error(f"{file}: the pickle asks for more memory than this machine has; it is corrupt") from None
    except OSError as exc:
        raise error(f"{file}: cannot read ({exc})") from None


def parse_json(data: bytes, where: str, error: type[SolaError],
               object_pairs_hook: Callable[[list], Any] | None = None) -> Any:
    """The JSON document in `data` (UTF-8), parsed by orjson when installed (about 3x faster on large files),
    else (and for what orjson refuses: NaN, integers beyond 64 bits, duplicate-key checks) by `json`.

    Raises `error` naming `where` for an empty file, invalid UTF-8, invalid JSON and a document nested
    too deeply to parse.
    """
    if not data.strip():
        raise error(f"{where}: empty file ({len(data)} bytes); expected a JSON document")
    if orjson is not None and object_pairs_hook is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=object_pairs_hook)
    except UnicodeDecodeError:
        raise error(f"{where}: cannot read: not a UTF-8 text file; expected a JSON document") from None
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc}); the file is truncated or corrupt") from None
    except RecursionError:
        raise error(f"{where}: too deeply nested to read (JSON nested beyond Python's recursion limit); "
                    "expected a plain document of a few levels") from None


def read_json(file: str | os.PathLike, error: type[SolaError], what: str = "file",
              object_pairs_hook: Callable[[list], Any] | None = None) -> Any:
    """`parse_json` of a regular file (`sola.core.inputs.input_file` checks it first); raises `error` naming the file."""
    file = input_file(file, what, error)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise error(f"{what} {file}: cannot read ({exc.strerror or exc})") from None
    return parse_json(data, str(file), error, object_pairs_hook)


