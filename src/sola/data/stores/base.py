"""The `FeatureStore` interface: where per-video snippet features live, in any layout.

A store maps video ids to `(T, C)` arrays. Every layout (a directory of `.npy`, `.csv`, pickles,
one HDF5 file, ...) implements the same small interface and registers itself with
`register_layout`. The contract of a layout:
- `declared_options`: the keyword options it takes (`StoreOption`: name, type, help); `open_store`
  checks options against them and the command line builds its store flags from them;
- `detect`, `video_ids`, `read` (which changes nothing: the same call gives the same answer
  whatever was read before), `close` (releases open files; a no-op by default);
- `writer(out)`, a writer of its own layout so that `transform` is format-preserving, and
  `open_output(out)`, which opens what that writer wrote.
"""

from __future__ import annotations

import abc
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import numpy as np

from sola.core.atomic import atomic_path, remove_stale_temporaries
from sola.core.errors import EmptyVideoError, StoreError
from sola.core.inputs import input_file
from sola.data.stores.sniff import file_looks_like

LAYOUTS: dict[str, type["FeatureStore"]] = {}


@dataclass(frozen=True)
class StoreOption:
    """One keyword option of a layout: `open_store(path, NAME=value)`, and the flag `--NAME` when `cli`."""

    name: str
    type: Callable[[str], Any]  # turns command-line text into the option's value
    help: str
    cli: bool = True  # a flag of every command that reads features; False: Python only


# Options that several layouts take (one declaration, so that they mean the same everywhere).
PREFIX = StoreOption("prefix", str, "file-name prefix before the video id (e.g. v_)")
SUFFIX = StoreOption("suffix", str, "file-name suffix after the video id (before the extension)")
KEY = StoreOption("key", str, "array/dataset name inside each file")


def register_layout(name: str) -> Callable[[type["FeatureStore"]], type["FeatureStore"]]:
    """Class decorator: make a `FeatureStore` subclass available to `open_store` as `name`."""

    def decorate(cls: type[FeatureStore]) -> type[FeatureStore]:
        cls.layout = name
        LAYOUTS[name] = cls
        return cls

    return decorate


def command_line_options() -> dict[str, tuple[StoreOption, list[str]]]:
    """The options registered layouts expose as flags: name -> (option, names of the layouts taking it).

    Raises `StoreError` when two layouts declare one option name with different types.
    """
    found: dict[str, tuple[StoreOption, list[str]]] = {}
    for layout, cls in LAYOUTS.items():
        for option in cls.declared_options:
            if not option.cli:
                continue
            first, layouts = found.setdefault(option.name, (option, []))
            if first.type is not option.type:
                raise StoreError(f"layouts {layouts[0]!r} and {layout!r} declare option {option.name!r} with "
                                 "different types; give one of them another name")
            layouts.append(layout)
    return found


def detect_layouts(path: Path) -> list[str]:
    """Names of every layout whose `detect` accepts `path`."""
    return [name for name, cls in LAYOUTS.items() if cls.detect(path)]


def open_store(path: str | os.PathLike, layout: str | None = None, **options: Any) -> "FeatureStore":
    """Open a feature store, detecting its layout from `path` unless `layout` is given.

    `options` go to the layout (e.g. `prefix="v_"`, `key="feats"`; see its `declared_options`).
    Raises `StoreError` if the path does not exist, the layout is unknown, cannot be detected,
    several layouts match, or the layout does not take one of the options.
    """
    path = Path(path)
    if not path.is_dir():  # else one file: a directory of per-video files or one file, never a device
        input_file(path, "feature store", StoreError)
    if layout is None:
        found = detect_layouts(path)
        if len(found) > 1:
            raise StoreError(
                f"{path} looks like several feature layouts ({', '.join(found)}); force one with --layout"
            )
        if not found:
            raise StoreError(
                f"cannot tell the feature layout of {path}; expected one of {', '.join(sorted(LAYOUTS))} "
                "(force one with --layout)"
            )
        layout = found[0]
    if layout not in LAYOUTS:
        raise StoreError(f"unknown feature layout {layout!r}; known: {', '.join(sorted(LAYOUTS))}")
    cls = LAYOUTS[layout]
    known = [option.name for option in cls.declared_options]
    unknown = sorted(set(options) - set(known))
    if unknown and not cls.forwards_options:
        raise StoreError(f"layout {layout!r} does not take these options ({', '.join(unknown)}); "
                         f"it takes: {', '.join(known) or 'none'}")
    return cls(path, **options)


class StoreWriter(abc.ABC):
    """Writes videos into a store of one layout; each `write` is atomic, reruns skip done videos."""

    path: Path

    @abc.abstractmethod
    def has(self, video_id: str) -> bool:
        """True if `video_id` was already written completely (so a rerun can skip it)."""

    @abc.abstractmethod
    def write(self, video_id: str, features: np.ndarray) -> None:
        """Write one `(T, C)` array; after it returns the video is complete on disk."""

    def close(self) -> None:
        """Finish the store (layouts with one file for all videos finalise it here)."""

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


class FeatureStore(abc.ABC):
    """Read access to `(T, C)` snippet features of many videos, keyed by video id."""

    layout: ClassVar[str] = ""
    # The keyword options the constructor takes after the path (`open_store` checks them).
    declared_options: ClassVar[tuple[StoreOption, ...]] = ()
    # True when options other than the declared ones go on to inner stores (two-stream).
    forwards_options: ClassVar[bool] = False
    # True when `window_source` slices the file lazily (npy rows, HDF5 dataset); otherwise training
    # caches the videos once as .npy files read row by row instead of holding them all in memory.
    random_access: ClassVar[bool] = False

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # -- what every layout implements -------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def detect(cls, path: Path) -> bool:
        """True if `path` looks like a store of this layout (used when no layout is forced)."""

    @abc.abstractmethod
    def video_ids(self) -> list[str]:
        """Sorted video ids."""

    @abc.abstractmethod
    def read(self, video_id: str) -> np.ndarray:
        """The `(T, C)` features of one video in their stored dtype; raises `StoreError`.

        Reading changes no option of the store: what one read answers does not depend on others.
        """

    @abc.abstractmethod
    def writer(self, out: str | os.PathLike) -> StoreWriter:
        """A writer for a new store of the same layout and options at `out`."""

    # -- overridable defaults ---------------------------------------------------------------
    def window_source(self, video_id: str) -> Any:
        """A sliceable `(T, C)` view for drawing training windows without rereading the file.

        Layouts that can read slices lazily return such a source (and set `random_access`); the default reads
        the whole array.
        """
        return self.read(video_id)

    def shape(self, video_id: str) -> tuple[int, int]:
        """`(T, C)` of one video (layouts override this to avoid reading the data)."""
        return tuple(self.read(video_id).shape)  # type: ignore[return-value]

    def options(self) -> dict[str, Any]:
        """Layout options needed to reopen this store the same way (e.g. prefix/suffix)."""
        return {}

    def source_of(self, video_id: str) -> str:
        """Where one video's features live, for messages (layouts with a file per video name it)."""
        return f"{self.path}[{video_id}]"

    def open_output(self, out: str | os.PathLike) -> "FeatureStore":
        """The store that `writer(out)` wrote, opened with this store's layout and options."""
        return open_store(out, layout=self.layout, **self.options())

    def close(self) -> None:
        """Release open files (a later read reopens them); layouts that hold none do nothing."""

    def __enter__(self) -> "FeatureStore":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    # -- shared conveniences ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.video_ids())

    def __iter__(self) -> Iterator[str]:
        return iter(self.video_ids())

    def __contains__(self, video_id: object) -> bool:
        return video_id in set(self.video_ids())

    def dim(self) -> int:
        """Feature dimension C, read from the first video; raises `StoreError` on an empty store."""
        ids = self.video_ids()
        if not ids:
            raise StoreError(f"feature store {self.path} holds no videos")
        return self.shape(ids[0])[1]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def check_features(array: np.ndarray, where: str) -> np.ndarray:
    """Check that an array is a non-empty, finite-typed `(T, C)` matrix; raise `StoreError`."""
    if array.ndim != 2:
        raise StoreError(
            f"{where}: features must have shape (T, C), got shape {tuple(array.shape)}; "
            "store one 2-D array per video"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise EmptyVideoError(f"{where}: empty features of shape {tuple(array.shape)}; remove or re-extract it")
    if not np.issubdtype(array.dtype, np.floating):
        raise StoreError(f"{where}: features must be floating point, got dtype {array.dtype}")
    return array


class DirectoryStore(FeatureStore):
    """Shared code of layouts with one file per video: `DIR/{prefix}{video_id}{suffix}{ext}`.

    Subclasses set `extensions` (the first one is written) and implement `load_file`.
    """

    extensions: ClassVar[tuple[str, ...]] = ()
    declared_options = (PREFIX, SUFFIX)

    def __init__(self, path: str | os.PathLike, prefix: str = "", suffix: str = "") -> None:
        super().__init__(path)
        if not self.path.is_dir():
            problem = "is a file, not a directory; give the folder of per-video files (or another --layout)" \
                if self.path.exists() else "does not exist"
            raise StoreError(f"feature directory {self.path} {problem}")
        self.prefix, self.suffix = prefix, suffix
        self._files: dict[str, Path] | None = None  # the directory listing, read once

    @classmethod
    def detect(cls, path: Path) -> bool:
        return path.is_dir() and any(
            p.name.endswith(cls.extensions) and not p.name.startswith(".") for p in path.iterdir()
        )

    def files(self) -> dict[str, Path]:
        """Video id -> file; raises `StoreError` if two files give the same id."""
        if self._files is None:
            found: dict[str, Path] = {}
            for entry in sorted(self.path.iterdir()):
                ext = next((e for e in self.extensions if entry.name.endswith(e)), None)
                if ext is None or entry.name.startswith(".") or not entry.is_file():
                    continue
                stem = entry.name[: -len(ext)]
                if not stem.startswith(self.prefix) or not stem.endswith(self.suffix):
                    continue
                video_id = stem[len(self.prefix) : len(stem) - len(self.suffix)]
                if video_id in found:
                    raise StoreError(
                        f"{self.path}: duplicate video id {video_id!r} ({found[video_id].name} and "
                        f"{entry.name}); keep one file per video"
                    )
                found[video_id] = entry
            self._files = dict(sorted(found.items()))
        return self._files

    def video_ids(self) -> list[str]:
        return list(self.files())

    def file(self, video_id: str) -> Path:
        """Path of one video's file; raises `StoreError` if the store has no such video."""
        file = self.files().get(video_id)
        if file is None:
            raise StoreError(f"{self.path}: no features for video {video_id!r}")
        return file

    @abc.abstractmethod
    def load_file(self, file: Path) -> np.ndarray:
        """Decode one file into an array (not yet checked); raises `StoreError`."""

    def read(self, video_id: str) -> np.ndarray:
        file = self.file(video_id)
        return check_features(self.load_file(file), str(file))

    def source_of(self, video_id: str) -> str:
        return str(self.file(video_id))

    def options(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "suffix": self.suffix}


class KeyedDirectoryStore(DirectoryStore):
    """Shared code of directory layouts whose files hold a bare array or `{key: array}` (npz, pt, pickle-dir).

    `read` chooses the entry of each file by `pick_key` and changes nothing. `options` and `writer`
    sniff the first video's file (once) for how the files store their features, so that the
    output stores them the same way. Subclasses implement `load_entry` and set `writer_class`.
    """

    declared_options = (PREFIX, SUFFIX, KEY)
    writer_class: ClassVar[type["KeyedDirectoryWriter"]]

    def __init__(self, path: str | os.PathLike, prefix: str = "", suffix: str = "", key: str | None = None) -> None:
        super().__init__(path, prefix, suffix)
        self.key = key
        self._sniffed: dict[str, Any] | None = None

    @abc.abstractmethod
    def load_entry(self, file: Path) -> tuple[np.ndarray, str | None]:
        """Decode one file: its feature array (not yet checked) and its key (None for a bare array)."""

    def load_file(self, file: Path) -> np.ndarray:
        return self.load_entry(file)[0]

    def sniff_file(self, file: Path) -> dict[str, Any]:
        """How one file stores its features, as keyword options of `writer_class` (at least `key`)."""
        return {"key": self.load_entry(file)[1]}

    def _sniff(self) -> dict[str, Any]:
        """`sniff_file` of the first video (of an empty store: the given key), worked out once."""
        if self._sniffed is None:
            ids = self.video_ids()
            self._sniffed = self.sniff_file(self.file(ids[0])) if ids else {"key": self.key}
        return self._sniffed

    def options(self) -> dict[str, Any]:
        return {**super().options(), "key": self._sniff()["key"]}

    def writer(self, out: str | os.PathLike) -> "KeyedDirectoryWriter":
        return self.writer_class(Path(out), self.prefix, self.suffix, **self._sniff())


class SingleFileStore(FeatureStore):
    """Shared code of layouts with one file for all videos (HDF5, one pickle).

    Detected by a suffix in `suffixes` or by the file's first bytes (`signature`, unless the file is
    named with one of `foreign_suffixes`); `kind` names the format in messages.
    """

    suffixes: ClassVar[tuple[str, ...]] = ()
    signature: ClassVar[bytes] = b""
    foreign_suffixes: ClassVar[tuple[str, ...]] = ()
    kind: ClassVar[str] = ""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        input_file(self.path, f"{self.kind} feature file", StoreError)

    @classmethod
    def detect(cls, path: Path) -> bool:
        return file_looks_like(path, cls.suffixes, cls.signature, cls.foreign_suffixes)


class DirectoryWriter(StoreWriter):
    """Writes `OUT/{prefix}{id}{suffix}{ext}`, each file atomically; `close()` removes stale temporaries."""

    extension = ""

    def __init__(self, path: str | os.PathLike, prefix: str = "", suffix: str = "") -> None:
        self.path, self.prefix, self.suffix = Path(path), prefix, suffix
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"output {self.path} exists and is not a directory; choose another --out")
        self.path.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Remove `.NAME.*.tmp` leftovers of killed runs (at the end: under DDP the other ranks'
        temporaries are in flight until every rank has finished)."""
        remove_stale_temporaries(self.path)

    def file(self, video_id: str) -> Path:
        """Path of one video's output file."""
        return self.path / f"{self.prefix}{video_id}{self.suffix}{self.extension}"

    def has(self, video_id: str) -> bool:
        return self.file(video_id).is_file()

    def write(self, video_id: str, features: np.ndarray) -> None:
        with atomic_path(self.file(video_id)) as tmp:
            with open(tmp, "wb") as handle:
                self.dump(handle, video_id, features)

    @abc.abstractmethod
    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        """Encode one video's `(T, C)` array into an open binary file; must be deterministic."""


class KeyedDirectoryWriter(DirectoryWriter):
    """A directory writer whose files hold `{key: array}`, or the bare array when `key` is None."""

    def __init__(self, path: str | os.PathLike, prefix: str = "", suffix: str = "", key: str | None = None) -> None:
        super().__init__(path, prefix, suffix)
        self.key = key

    def payload(self, features: Any) -> Any:
        """What one file holds: `{key: features}`, or `features` itself without a key."""
        return {self.key: features} if self.key else features


class PartsWriter(StoreWriter):
    """Shared code of layouts with one file for all videos (HDF5, one pickle).

    Each video is written atomically as `.OUT.parts/{id}.npy`, so a killed run loses nothing and a
    rerun skips finished videos (ranks can share the work); `close()` (one process) assembles the
    previous output and the parts into a temporary file renamed onto OUT. Subclasses implement
    `finished_ids` (videos in a complete earlier OUT) and `assemble`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"output {self.path} is a directory; this layout writes one file (--out FILE)")
        self.parts = self.path.parent / f".{self.path.name}.parts"
        self.parts.mkdir(parents=True, exist_ok=True)
        self._done = self.finished_ids() if self.path.is_file() else set()

    @abc.abstractmethod
    def finished_ids(self) -> set[str]:
        """Video ids already in the complete output file of an earlier run."""

    @abc.abstractmethod
    def assemble(self, parts: dict[str, Path]) -> None:
        """Write OUT, in sorted video order, from the previous complete OUT (if any) and `parts`,
        through a temporary file renamed onto it (`atomic_path`)."""

    def close(self) -> None:
        """Assemble OUT (unless nothing was written since it was complete), then remove the parts."""
        self.remove_stale_temporaries()
        parts = self.finished_parts()
        if parts or not self.path.is_file():
            self.assemble(parts)
        shutil.rmtree(self.parts, ignore_errors=True)

    def remove_stale_temporaries(self) -> None:
        """Leftovers of killed runs: part temporaries and a half-built output file."""
        remove_stale_temporaries(self.parts)
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            stale.unlink(missing_ok=True)

    def part(self, video_id: str) -> Path:
        """The part file of one video; raises `StoreError` for ids that cannot name a file."""
        if "/" in video_id or video_id.startswith("."):
            raise StoreError(f"video id {video_id!r} cannot name a part file")
        return self.parts / f"{video_id}.npy"

    def finished_parts(self) -> dict[str, Path]:
        """Video id -> part file of every video written since the last complete output."""
        return {p.name[: -len(".npy")]: p for p in self.parts.glob("*.npy") if not p.name.startswith(".")}

    def has(self, video_id: str) -> bool:
        return video_id in self._done or self.part(video_id).is_file()

    def write(self, video_id: str, features: np.ndarray) -> None:
        with atomic_path(self.part(video_id)) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, np.ascontiguousarray(features), allow_pickle=False)
