"""Parsing helpers shared by the readers: cached duplicate-refusing JSON, CSV headers and rows, numbers.

Also the pieces every format needs: a `Segment` from raw start/end/label values, the subset named by
a file or a THUMOS video id, and the `detect` helpers (`_first_entry` for JSON, `_has_columns` for
CSV). Every failure is an `AnnotationError` naming the file and the fix.
"""

from __future__ import annotations

import csv
import math
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from sola.core.errors import AnnotationError, SolaWarning
from sola.core.safe_load import read_json
from sola.data.annotations.model import _SUBSET_ALIASES, AMBIGUOUS, Segment, clean_video_id

_json_cache: dict[tuple, object] = {}


def _load_json(path: Path):
    """Parse a JSON file (`sola.core.safe_load.read_json`: bounded nesting), refusing duplicate keys; the last
    file parsed is cached (detect + read)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _json_cache:
        return _json_cache[key]

    def no_duplicates(pairs):
        mapping = dict(pairs)
        if len(mapping) != len(pairs):
            keys = [k for k, _ in pairs]
            dup = sorted({k for k in keys if keys.count(k) > 1})
            raise AnnotationError(f"{path}: duplicate key(s) {dup[:5]} (duplicate video ids?); keep one of each")
        return mapping

    data = read_json(path, AnnotationError, "annotation file", object_pairs_hook=no_duplicates)
    _json_cache.clear()
    _json_cache[key] = data
    return data


def _annotation_list(entry: dict, path: Path, raw_id, missing: list[str]) -> list[dict]:
    """The `annotations` list of one video entry; a missing (or null) one is `[]` and its id is added to
    `missing` (for `_warn_videos`). Raises `AnnotationError` for anything but a list of mappings."""
    value = entry.get("annotations")
    if value is None:
        missing.append(str(raw_id))
        return []
    if not isinstance(value, list):
        raise AnnotationError(f"{path}: video {raw_id!r}: 'annotations' must be a list of {{segment, label}}, "
                              f"got {type(value).__name__}")
    for k, ann in enumerate(value):
        if not isinstance(ann, dict):
            raise AnnotationError(f"{path}: video {raw_id!r} annotation {k}: expected a mapping "
                                  f"{{segment, label}}, got {type(ann).__name__}")
    return value


def _warn_videos(path: Path, video_ids: list[str], total: int, what: str) -> None:
    """One `SolaWarning` naming the videos of `path` that `what` ("have no subset (...)"), if any."""
    if video_ids:
        shown = ", ".join(map(repr, video_ids[:3])) + (", ..." if len(video_ids) > 3 else "")
        warnings.warn(f"{path}: {len(video_ids)} of {total} videos {what}: {shown}", SolaWarning, stacklevel=2)


def _csv_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [name.strip() for name in next(csv.reader(handle), [])]
    except UnicodeDecodeError:
        raise AnnotationError(f"{path}: not a UTF-8 text file") from None


def _csv_rows(path: Path, required: set[str]) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = required - set(reader.fieldnames or [])
        if missing:
            raise AnnotationError(f"{path}: missing CSV column(s) {sorted(missing)}")
        return list(reader)


def _number(text, path: Path, where: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError, OverflowError):
        shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:30] + "..."
        raise AnnotationError(f"{path}: {where}: {shown} is not a number within float range; fix the file") from None
    if not math.isfinite(value):
        raise AnnotationError(f"{path}: {where}: value {text!r} is not finite; fix the file")
    return value


def _optional_number(value, path: Path, where: str) -> float | None:
    return None if value is None or value == "" else _number(value, path, where)


def _make_segment(start, end, label: str, label_id, path: Path, where: str) -> Segment:
    label = "" if label is None else str(label).strip()  # JSON null is no label, not the class "None"
    ambiguous = label.lower() == AMBIGUOUS
    return Segment(
        start=_number(start, path, where),
        end=_number(end, path, where),
        label=label,
        label_id=None if ambiguous or label_id in (None, "") else int(label_id),
        ambiguous=ambiguous,
    )


def _subset_from_name(path: Path) -> str:
    """Subset named by a file (`..._val_...`, `..._test_...`), or "" if none."""
    for token in re.split(r"[^a-z]+", path.stem.lower()):
        if token in _SUBSET_ALIASES:
            return _SUBSET_ALIASES[token]
    return ""


def _subset_from_thumos_id(video_id: str) -> str:
    if video_id.startswith("video_validation_"):
        return "validation"
    if video_id.startswith("video_test_"):
        return "test"
    return ""


def _first_entry(path: Path) -> dict | None:
    """The first value of a JSON object file when it is a mapping (a per-video entry), else None."""
    data = _load_json(path)
    first = next(iter(data.values()), None) if isinstance(data, dict) else None
    return first if isinstance(first, dict) else None


def _has_columns(*names: str) -> Callable[[Path], bool]:
    """A `detect` for CSV formats: the header holds all of `names`."""
    return lambda path: set(names) <= set(_csv_header(path))


def _csv_records(path: Path, id_column: str, required: set[str]) -> Iterator[tuple[str, str, dict[str, str]]]:
    """`(video id, "line N", row)` of every row of an annotation CSV that has the `required` columns."""
    for line, row in enumerate(_csv_rows(path, {id_column} | required), start=2):
        yield clean_video_id(row[id_column].strip()), f"line {line}", row
