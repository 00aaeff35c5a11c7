"""Temporal segments of many videos as parallel arrays, tIoU, and the tIoU threshold presets.

Everything the evaluators read is a `Segments`: ground truth (no scores) or predictions (scores).
Times are seconds throughout; labels are class names (strings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sola.core.errors import PredictionError
from sola.data.annotations.model import MAX_SECONDS

# Exact decimals (np.linspace would give 0.6000000000000001 and friends).
THUMOS14_TIOU = (0.3, 0.4, 0.5, 0.6, 0.7)
ACTIVITYNET_TIOU = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
TIOU_PRESETS = {"thumos14": THUMOS14_TIOU, "activitynet": ACTIVITYNET_TIOU}
MAX_THRESHOLDS = 1000  # each tIoU threshold is one more evaluation; ActivityNet uses 10


@dataclass(frozen=True)
class Segments:
    """Segments of many videos: `video`, `label` (N,) str; `start`, `end` (N,) seconds; `score` or None.

    Build one with `Segments.build(...)`, which checks shapes and values.
    """

    video: np.ndarray  # (N,) str
    start: np.ndarray  # (N,) float64, seconds
    end: np.ndarray  # (N,) float64, seconds
    label: np.ndarray  # (N,) str; "" where a file gives no label (proposals)
    score: np.ndarray | None = None  # (N,) float64, predictions only

    @classmethod
    def build(cls, video, start, end, label=None, score=None, *, where: str = "segments",
              allow_reversed: bool = False) -> "Segments":
        """Check and convert parallel sequences; raises `PredictionError` naming `where` and the fix.

        A segment must have finite times within +-`MAX_SECONDS` with start <= end (with `allow_reversed`,
        for predictions, end < start is kept: it overlaps nothing, so the evaluators score it as a false
        positive, as the official code does); a score must be finite.
        """
        video = np.asarray(video, dtype=str).reshape(-1)
        n = len(video)
        start, end = _numbers(start, "start time", video, where), _numbers(end, "end time", video, where)
        label = np.full(n, "", dtype=str) if label is None else np.asarray(label, dtype=str).reshape(-1)
        arrays = {"start": start, "end": end, "label": label}
        if score is not None:
            score = _numbers(score, "score", video, where)
            arrays["score"] = score
        for name, array in arrays.items():
            if len(array) != n:
                raise PredictionError(f"{where}: {name} has {len(array)} entries for {n} segments")
        bad = ~(np.isfinite(start) & np.isfinite(end))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise PredictionError(
                f"{where}: video {str(video[i])!r} has a segment with a non-finite time "
                f"[{start[i]}, {end[i]}]; write finite start and end seconds"
            )
        bad = (np.abs(start) > MAX_SECONDS) | (np.abs(end) > MAX_SECONDS)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise PredictionError(
                f"{where}: video {str(video[i])!r} has a segment [{start[i]:g}, {end[i]:g}] beyond {MAX_SECONDS:g} "
                f"seconds (31 years; {int(bad.sum())} such); write times in seconds"
            )
        bad = end < start
        if bad.any() and not allow_reversed:
            i = int(np.flatnonzero(bad)[0])
            raise PredictionError(
                f"{where}: video {str(video[i])!r} has a segment that ends before it starts "
                f"[{start[i]}, {end[i]}] ({int(bad.sum())} such); write [start, end] with start <= end"
            )
        if score is not None and not np.isfinite(score).all():
            i = int(np.flatnonzero(~np.isfinite(score))[0])
            raise PredictionError(f"{where}: video {str(video[i])!r} has a non-finite score {score[i]}; scores must be finite")
        return cls(video=video, start=start, end=end, label=label, score=score)

    def __len__(self) -> int:
        return len(self.video)

    def reversed_note(self) -> str | None:
        """One line about segments that end before they start (scored as false positives), or None."""
        bad = np.flatnonzero(self.end < self.start)
        if not len(bad):
            return None
        i = int(bad[0])
        return (f"{len(bad)} prediction(s) end before they start (e.g. video {str(self.video[i])!r} "
                f"[{self.start[i]:g}, {self.end[i]:g}]); scored as false positives (tIoU 0), as the official evaluator does")

    def select(self, mask: np.ndarray) -> "Segments":
        """The segments where `mask` (N,) is true (or at the given indices)."""
        return Segments(
            video=self.video[mask],
            start=self.start[mask],
            end=self.end[mask],
            label=self.label[mask],
            score=None if self.score is None else self.score[mask],
        )


def _numbers(values, name: str, video: np.ndarray, where: str) -> np.ndarray:
    """`values` as a float64 vector; raises `PredictionError` naming the first value that is no number."""
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        pass
    for i, value in enumerate(values):
        try:
            float(value)
        except (TypeError, ValueError, OverflowError):
            owner = f"video {str(video[i])!r}: " if i < len(video) else ""
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:30] + "..."
            raise PredictionError(f"{where}: {owner}{name} {shown} is not a number within float range; write "
                                  "numbers for each segment's start and end (seconds) and score") from None
    raise PredictionError(f"{where}: the {name}s are not a flat list of numbers")


def segment_iou(start_a, end_a, start_b, end_b) -> np.ndarray:
    """Elementwise temporal IoU of segments a and b (broadcasting arrays of seconds).

    The official formula (intersection clipped at 0, union = len_a + len_b - intersection); where the
    union is 0 (two zero-length segments) the tIoU is 0 rather than NaN.
    """
    intersection = np.clip(np.minimum(end_a, end_b) - np.maximum(start_a, start_b), 0.0, None)
    union = (end_b - start_b) + (end_a - start_a) - intersection
    safe = np.where(union > 0, union, 1.0)
    return np.where(union > 0, intersection / safe, 0.0)


def parse_tiou(text: str | None, default: str = "activitynet") -> np.ndarray:
    """tIoU thresholds from a preset name, a list "0.3,0.5" or a range "0.3:0.1:0.7" (inclusive).

    Values are rounded to 10 decimals so that ranges give exact decimals. Raises `PredictionError`
    for values outside (0, 1] or text that is none of the three forms.
    """
    text = (text or default).strip()
    if text.lower() in TIOU_PRESETS:
        values = np.array(TIOU_PRESETS[text.lower()], dtype=np.float64)
    else:
        try:
            if ":" in text:
                first, step, last = (float(part) for part in text.split(":"))
                if step <= 0 or last < first:
                    raise ValueError
                count = int(np.floor((last - first) / step + 1e-9)) + 1
                if count > MAX_THRESHOLDS:
                    raise PredictionError(f"tIoU range {text!r} gives {count} thresholds; at most {MAX_THRESHOLDS} "
                                          "(each is one more evaluation): use a larger step such as 0.05")
                values = np.round(first + step * np.arange(count), 10)
            else:
                values = np.round(np.array([float(part) for part in text.split(",") if part.strip()]), 10)
        except (ValueError, OverflowError):
            raise PredictionError(
                f"cannot read tIoU thresholds {text!r}; give a preset ({', '.join(TIOU_PRESETS)}), "
                "a list such as 0.3,0.5,0.7 or a range such as 0.3:0.1:0.7"
            ) from None
    if values.size > MAX_THRESHOLDS:
        raise PredictionError(f"{values.size} tIoU thresholds; at most {MAX_THRESHOLDS} (each is one more evaluation)")
    if values.size == 0 or not ((values > 0) & (values <= 1)).all():
        raise PredictionError(f"tIoU thresholds {text!r} must be non-empty and lie in (0, 1]")
    return values
