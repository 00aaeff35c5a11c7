"""The annotation model: `Segment`, `VideoAnnotation` and the `Annotations` mapping, times in seconds.

Every reader produces this model; it also holds the subset-name aliases (`canonical_subset`) and the
video-id normalisation (`clean_video_id`, `v_<id>` <-> `<id>`) that lookups and id matching share.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

# No video lasts a billion seconds (31 years): a time beyond it is a unit mix-up or a hostile file, and
# near 1e308 the lengths and unions of the evaluators would overflow to infinity.
MAX_SECONDS = 1e9

AMBIGUOUS = "ambiguous"
_FILE_SUFFIXES = (".npy", ".npz", ".pt", ".pkl", ".pickle", ".csv", ".h5", ".mp4", ".mkv", ".avi", ".webm")
_SUBSET_ALIASES = {
    "train": "training",
    "training": "training",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
    "test": "test",
    "testing": "test",
}


@dataclass
class Segment:
    """One annotated action instance; `start`/`end` in seconds."""

    start: float
    end: float
    label: str
    label_id: int | None = None
    ambiguous: bool = False


@dataclass
class VideoAnnotation:
    """Everything annotated about one video; `duration` in seconds (NaN when the file lacks it)."""

    video_id: str
    subset: str
    duration: float
    fps: float | None
    segments: list[Segment] = field(default_factory=list)
    feat_stride: float | None = None  # frames between snippets, when the file states it
    num_frames: float | None = None  # frames per snippet window, when the file states it


def canonical_subset(name: str) -> str:
    """Lower-case subset name with aliases folded: val/valid -> validation, train -> training."""
    lowered = name.strip().lower()
    return _SUBSET_ALIASES.get(lowered, lowered)


def clean_video_id(name: str) -> str:
    """A video id without a file extension (`highjump.npy` -> `highjump`)."""
    if name.lower().endswith(_FILE_SUFFIXES):  # every suffix is one dot and letters
        return name[: name.rindex(".")]
    return name


def _bare_id(video_id: str) -> str:
    return video_id[2:] if video_id.startswith("v_") else video_id


def video_key(video_id: str) -> str:
    """The form under which ids of one video match everywhere: no file extension, no `v_` prefix
    (`v_abc.mp4`, `v_abc` and `abc` are one video)."""
    return _bare_id(clean_video_id(video_id))


def aliased_ids(video_ids) -> tuple[str, str] | None:
    """The first two distinct ids of `video_ids` that name one video (same `video_key`), or None."""
    first: dict[str, str] = {}
    for video_id in video_ids:
        other = first.setdefault(video_key(video_id), video_id)
        if other != video_id:
            return other, video_id
    return None


class Annotations(Mapping):
    """Read-only mapping `video_id -> VideoAnnotation` with subset and label helpers."""

    def __init__(self, videos: Mapping[str, VideoAnnotation], source: str = "") -> None:
        self._videos = dict(sorted(videos.items()))
        self.source = source
        self._by_bare: dict[str, str] | None = None

    def __getitem__(self, video_id: str) -> VideoAnnotation:
        return self._videos[video_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._videos)

    def __len__(self) -> int:
        return len(self._videos)

    def __repr__(self) -> str:
        return f"Annotations({len(self)} videos, {self.num_segments()} segments, source={self.source!r})"

    def get(self, video_id: str, default: VideoAnnotation | None = None) -> VideoAnnotation | None:
        """The annotation of `video_id`, also found as `v_<id>` <-> `<id>` or with a file extension."""
        if video_id in self._videos:
            return self._videos[video_id]
        if self._by_bare is None:
            self._by_bare = {_bare_id(k): k for k in self._videos}
        key = self._by_bare.get(_bare_id(clean_video_id(video_id)))
        return self._videos[key] if key is not None else default

    def subset(self, name: str) -> "Annotations":
        """Videos of one subset; names match case-insensitively (`val`/`valid` = `validation`)."""
        wanted = canonical_subset(name)
        chosen = {k: v for k, v in self._videos.items() if canonical_subset(v.subset) == wanted}
        return Annotations(chosen, source=self.source)

    def subsets(self) -> dict[str, int]:
        """Number of videos per subset name, as written in the file."""
        counts: dict[str, int] = {}
        for video in self._videos.values():
            counts[video.subset] = counts.get(video.subset, 0) + 1
        return counts

    def labels(self) -> list[str]:
        """Sorted class names (ambiguous segments excluded)."""
        return sorted({s.label for v in self._videos.values() for s in v.segments if not s.ambiguous})

    def label_index(self) -> dict[str, int]:
        """Class name -> class index: the file's `label_id`s when complete, else sorted order."""
        ids: dict[str, int] = {}
        for video in self._videos.values():
            for seg in video.segments:
                if not seg.ambiguous and seg.label_id is not None:
                    ids.setdefault(seg.label, seg.label_id)
        labels = self.labels()
        if set(ids) == set(labels) and len(set(ids.values())) == len(ids):
            return {label: ids[label] for label in labels}
        return {label: i for i, label in enumerate(labels)}

    def num_segments(self, include_ambiguous: bool = True) -> int:
        """Number of segments over all videos."""
        return sum(
            1 for v in self._videos.values() for s in v.segments if include_ambiguous or not s.ambiguous
        )
