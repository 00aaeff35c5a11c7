"""The one guard of the promise "inputs are never modified": no output may land on or inside an input.

Every command that writes calls `check_outputs(outputs, inputs)` before any work. An output is refused
(`ConfigError`, one line naming the flag, the output and the input) when it

- is an input file: the same real path (through symbolic links) or the same file (hard links: the same
  `st_dev` + `st_ino`);
- lies inside an input directory (a feature store, a run folder the command reads); a folder of videos,
  which is read one level deep, may hold new outputs in a subfolder (`shallow=`), but the output may not
  be the folder or one of its files;
- for the flags listed in `whole=`: holds an input, because the command deletes or rewrites files
  anywhere in that directory (`sola demo` and `sola ablate` clean their output folder's subfolders;
  `sola splice` wants an empty OUT). Other output folders may hold an input (`sola compare d/features
  --out d` only adds files), but none of the paths they write may be or lie inside one.

A flag may name several paths: the one the user gave, then the files and folders the command derives from
it (`OUT/features`, `OUT/annotations.json`, a report's Markdown twin), so that the message names the one
that would collide. Inputs that do not exist are skipped (a config given by its shipped name, an optional
file not there yet: nothing of them can be lost).

Writes into the command's own run folder are allowed by design; the folder is then not passed as an
input directory, only the files of it that the command reads (`run_files`), so that those stay safe:

- `sola select RUN_DIR` writes `RUN_DIR/best.safetensors`, `RUN_DIR/select.json` and `RUN_DIR/select_head/`;
- `sola tal infer RUN_DIR` writes `RUN_DIR/predictions.json` by default (`--out` elsewhere is checked);
- `sola tal eval RUN_DIR --json RUN_DIR/NEW.json` may write a new file beside the run's files;
- `sola report DIR` writes `DIR/report.html`, `DIR/report.md` and `DIR/report_files/` by default.

A run folder given as an input to another command is never written into: `sola compare --adapter RUN_DIR`
selects its checkpoint into `OUT/sola_select/`, not into RUN_DIR (`sola ablate` and `sola demo` take no
run folder: they fit and select in their own OUT). `sola cost --json` reads no file; it calls the guard too.

Light: no torch, no NumPy; `sola.core` only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Union

from sola.core.errors import ConfigError

PathLike = Union[str, os.PathLike]

# The files and folders of sola's run and comparison folders (`sola.core.runs` and the experiments): what a
# command that writes into such a folder by design must still leave alone.
RUN_FILES = (
    "config.yaml", "metrics.jsonl", "state.safetensors", "run.json", "adapter.safetensors", "best.safetensors",
    "select.json", "select_head", "checkpoints", "weights.safetensors", "classes.json", "adapter.json",
    "features.json", "predictions.json", "evaluation.json",
    "compare.json", "compare.md", "sola_adapter.json", "results", "sola_run", "sola_features", "sola_select",
    "ablate.json", "ablate.md", "points", "original", "summary.json",
)


def run_files(folder: PathLike | None, keep: Iterable[str] = ()) -> dict[str, Path]:
    """The sola files present in a run or comparison `folder` (`RUN_FILES`), as inputs for `check_outputs`:
    `{"the run file RUN/config.yaml": path}`; `keep` names files the command rewrites there by design."""
    if folder is None or not Path(folder).is_dir():
        return {}
    folder = Path(folder)
    return {f"the run file {folder / name}": folder / name for name in RUN_FILES
            if name not in set(keep) and (folder / name).exists()}


def check_outputs(
    outputs: Mapping[str, PathLike | Iterable[PathLike] | None],
    inputs: Mapping[str, PathLike | Iterable[PathLike] | None],
    whole: Iterable[str] = (),
    shallow: Iterable[str] = (),
) -> None:
    """Refuse any output that is an input, lies inside an input directory or (for `whole` flags) holds an input.

    `outputs`: flag (as the user typed it: "--json", "--out", "OUT") -> a path, or the paths the command
    writes for that flag (the given one first), or None when not given. `inputs`: what the input is, as a
    message names it ("the ground truth GT"; a flag "--annotations" reads "the input --annotations") -> a
    path, several, or None. `whole`: output flags whose directories may hold no input (the command cleans
    in them). `shallow`: input names of folders of videos, read one level deep, that may hold new outputs
    (`extract videos/ --out videos/features`): only the folder itself and the files directly in it are
    protected. Raises `ConfigError`: "--json gt.json is the ground truth GT; choose another output path
    (inputs are never overwritten)".
    """
    whole, shallow = set(whole), set(shallow)
    found = [(f"the input {name}" if name.startswith("-") else name, Path(path), name in shallow)
             for name, paths in inputs.items() for path in _paths(paths)]
    found = [entry for entry in found if os.path.exists(entry[1])]  # nothing of a missing input is lost
    for flag, paths in outputs.items():
        paths = _paths(paths)
        if not paths:
            continue
        given = paths[0]
        for path in paths:
            shown = f"{given}" if path == given else f"{given} (it writes {path})"
            for name, source, one_level in found:
                if _same(path, source):
                    raise ConfigError(f"{flag} {shown} is {name}{_where(source, path)}; choose another output "
                                      "path (inputs are never overwritten)")
                if one_level and source.is_dir():
                    if path.is_file() and _same(path.parent, source):
                        raise ConfigError(f"{flag} {shown} is a file of {name}{_where(source, path)}; choose "
                                          "another output path (inputs are never overwritten)")
                elif source.is_dir() and _inside(path, source):
                    raise ConfigError(f"{flag} {shown} lies inside {name}{_where(source, path)}; choose an output "
                                      "path outside the inputs (inputs are never modified)")
                if flag in whole and _inside(source, path):
                    raise ConfigError(f"{flag} {shown} holds {name}{_where(source, path)}, and this command "
                                      "removes and rewrites files in it; choose an output directory that holds "
                                      "none of the inputs")


def _paths(value) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)] if str(value) else []
    return [Path(item) for item in value if item is not None and str(item)]


def _where(source: Path, output: Path) -> str:
    """" (PATH)" when the input's path adds something to the message."""
    return "" if str(source) == str(output) else f" ({source})"


def _real(path: Path) -> Path:
    """The real absolute path: symbolic links resolved as far as the path exists."""
    return Path(os.path.realpath(os.path.abspath(path)))


def _same(output: Path, source: Path) -> bool:
    """Whether `output` is `source`: the same real path, or the same file (a hard link, a bind mount)."""
    if _real(output) == _real(source):
        return True
    try:
        return os.path.samefile(output, source)
    except OSError:  # the output does not exist yet
        return False


def _inside(path: Path, folder: Path) -> bool:
    """Whether `path` lies strictly inside `folder` (by real paths, then by the identity of each existing
    ancestor of `path`: a folder reached through another mount or link)."""
    real, home = _real(path), _real(folder)
    if home in real.parents:
        return True
    try:
        folder_stat = os.stat(folder)
    except OSError:
        return False
    for ancestor in real.parents:
        try:
            if os.path.samestat(os.stat(ancestor), folder_stat):
                return True
        except OSError:
            continue
    return False
