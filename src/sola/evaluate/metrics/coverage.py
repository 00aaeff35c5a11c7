"""What a score was computed on: which ground-truth videos of a subset were covered, and how the rest counted.

Two situations, one record:
- an evaluator of a prediction file (`eval-detection`, `eval-proposals`, `tal eval`, `show`) keeps the official
  semantics: every ground-truth video of the subset counts, so a video without predictions is all misses. When
  predictions miss videos it says so; with `covered_only` it scores the covered videos alone.
- a head that trains and predicts itself (`compare`, `ablate`, `demo`, `select --criterion head`) can only predict
  the videos that have features, so it scores those alone and says how many of the subset that is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sola.core.errors import PredictionError
from sola.evaluate.metrics.segments import Segments

NO_PREDICTIONS = "have no predictions"
NO_FEATURES = "have no features"


@dataclass(frozen=True)
class Coverage:
    """K of the N ground-truth videos of `subset` were covered (had predictions or features).

    `scored_on_covered`: the score was computed on the K alone (else the other N-K count as misses);
    `why`: why the N-K were not covered (`NO_PREDICTIONS` or `NO_FEATURES`); `missing`: a few of their ids.
    """

    subset: str | None
    total: int
    covered: int
    scored_on_covered: bool
    why: str = NO_PREDICTIONS
    missing: tuple[str, ...] = ()

    @property
    def complete(self) -> bool:
        """Whether every ground-truth video of the subset was covered."""
        return self.covered == self.total

    @property
    def scored(self) -> int:
        """How many ground-truth videos the score was computed on."""
        return self.covered if self.scored_on_covered else self.total

    def line(self) -> str:
        """One sentence for logs and tables: what the score was computed on."""
        where = f"{self.subset} videos" if self.subset else "ground-truth videos"
        if self.complete:
            return f"scored on all {self.total} {where}"
        rest = self.total - self.covered
        example = f", e.g. {self.missing[0]!r}" if self.missing else ""
        if self.scored_on_covered:
            return f"scored on {self.covered} of {self.total} {where} ({rest} {self.why}{example})"
        return (f"predictions cover {self.covered} of {self.total} ground-truth videos of "
                f"{self.subset or 'the ground truth'}; the other {rest} count as misses{example} "
                "(--covered-only scores the covered ones alone)")

    def to_dict(self) -> dict:
        """JSON-ready: `{"subset", "total", "covered", "scored", "scored_on_covered", "why", "missing", "line"}`."""
        return {"subset": self.subset, "total": self.total, "covered": self.covered, "scored": self.scored,
                "scored_on_covered": self.scored_on_covered, "why": self.why, "missing": list(self.missing),
                "line": self.line()}


def cover(ground_truth: Segments, covered_videos, subset: str | None, scored_on_covered: bool,
          why: str = NO_PREDICTIONS) -> tuple[Segments, Coverage]:
    """The ground truth to score and the `Coverage` that says what it is.

    The ground-truth videos are those that hold a segment of `ground_truth` (the subset's; a video without
    segments has nothing to miss); `covered_videos`: the ids that have predictions (or features). With
    `scored_on_covered` the ground truth
    keeps only covered videos; otherwise it is returned whole (the official semantics). Raises `PredictionError`
    when the covered videos hold no ground-truth segment to score.
    """
    videos = list(dict.fromkeys(ground_truth.video.tolist()))
    covered = set(map(str, covered_videos))
    missing = [v for v in videos if v not in covered]
    record = Coverage(subset=subset, total=len(videos), covered=len(videos) - len(missing),
                      scored_on_covered=scored_on_covered, why=why, missing=tuple(missing[:3]))
    if scored_on_covered and missing:
        ground_truth = ground_truth.select(np.isin(ground_truth.video, list(covered)))
        if not len(ground_truth):
            raise PredictionError(
                f"none of the {record.covered} covered videos of {subset or 'the ground truth'} holds a ground-truth "
                f"segment ({record.total - record.covered} {why}, e.g. {missing[0]!r}); nothing to score"
            )
    return ground_truth, record
