"""The annotation-format registry: `AnnotationFormat`, `FORMATS` and the `register_format` decorator.

Each reader module (`activitynet`, `gtad`, `tsp`, `bsn`) registers its format here on import; the
registry gives `load_annotations`, `detect_format` and `--annotation-format` their choices, in the
order the package imports the readers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sola.data.annotations.model import VideoAnnotation

Reader = Callable[[Path, Path | None], dict[str, VideoAnnotation]]


@dataclass(frozen=True)
class AnnotationFormat:
    """One annotation format: how to recognise its files and how to read one (see `register_format`)."""

    name: str
    read: Reader  # (file, metadata CSV or None) -> {video id: VideoAnnotation}
    detect: Callable[[Path], bool]  # True for a file of this format (asked only for `suffixes`)
    suffixes: tuple[str, ...]
    title: str  # for --help and messages: "G-TAD CSV"
    shape: str  # what its files look like, for messages: "video,type,start,end,..."
    sibling: str | None = None  # without metadata given, use the one CSV beside the file with this word
    merge_metadata: bool = True  # fill duration / fps / subset from the metadata CSV after `read`
    hint: Callable[[Path], str | None] | None = None  # a message for a file that goes with this format


FORMATS: dict[str, AnnotationFormat] = {}


def register_format(
    name: str,
    *,
    suffixes: tuple[str, ...],
    detect: Callable[[Path], bool],
    title: str,
    shape: str,
    sibling: str | None = None,
    merge_metadata: bool = True,
    hint: Callable[[Path], str | None] | None = None,
) -> Callable[[Reader], Reader]:
    """Decorator of a reader `(path, metadata) -> {video_id: VideoAnnotation}`: make it format `name`
    of `load_annotations`, `detect_format` and `--annotation-format` (the fields: `AnnotationFormat`)."""

    def decorate(read: Reader) -> Reader:
        FORMATS[name] = AnnotationFormat(
            name, read, detect, tuple(suffixes), title, shape, sibling, merge_metadata, hint
        )
        return read

    return decorate
