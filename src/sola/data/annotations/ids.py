"""Feature ids <-> annotation ids: `match_ids` pairs the two sides into an `IdMatch`.

`v_<id>`, `<id>` and `<id>.npy` name the same video; two ids of one side naming the same video are
an error, and with `strict` so is any video without a partner.
"""

from __future__ import annotations

from dataclasses import dataclass

from sola.core.errors import AnnotationError
from sola.data.annotations.model import _bare_id, clean_video_id


@dataclass
class IdMatch:
    """How feature video ids pair with annotation video ids."""

    pairs: dict[str, str]  # feature id -> annotation id
    features_without_annotation: list[str]
    annotations_without_features: list[str]

    def none_match(self) -> str | None:
        """"0 of N feature ids match the M annotated ids (e.g. 'abc' vs 'v_xyz')..." when both sides hold ids and
        none pairs, else None."""
        if self.pairs or not (self.features_without_annotation and self.annotations_without_features):
            return None
        return (f"0 of {len(self.features_without_annotation)} feature ids match the "
                f"{len(self.annotations_without_features)} annotated ids (e.g. {self.features_without_annotation[0]!r}"
                f" vs {self.annotations_without_features[0]!r}); check that the features and the annotations are of "
                "the same videos (a prefix or suffix: --prefix/--suffix)")

    def require_some(self, source: str) -> "IdMatch":
        """Itself, or `AnnotationError` naming `source` when no feature id matches an annotated id."""
        if self.none_match():
            raise AnnotationError(f"{source}: {self.none_match()}")
        return self

    def summary(self, limit: int = 5) -> str:
        """One line: matched count and both kinds of misses with their first few names (or `none_match`)."""
        if self.none_match():
            return self.none_match()

        def few(names: list[str]) -> str:
            shown = ", ".join(names[:limit])
            return f" ({shown}{', ...' if len(names) > limit else ''})" if names else ""

        return (
            f"{len(self.pairs)} videos matched; {len(self.features_without_annotation)} with features but no "
            f"annotation{few(self.features_without_annotation)}; {len(self.annotations_without_features)} "
            f"annotated without features{few(self.annotations_without_features)}"
        )


def _by_video(names: list[str], side: str, fix: str = "") -> dict[str, str]:
    """Bare video id (no `v_`, no extension) -> name; raises `AnnotationError` if two names are one video."""
    found: dict[str, str] = {}
    for name in names:
        key = _bare_id(clean_video_id(name))
        if key in found:
            raise AnnotationError(
                f"duplicate video ids in the {side}: {found[key]!r} and {name!r} name the same video{fix}"
            )
        found[key] = name
    return found


def match_ids(feature_ids, annotation_ids, strict: bool = False) -> IdMatch:
    """Pair feature ids with annotation ids, treating `v_<id>` and `<id>` as the same video.

    Raises `AnnotationError` when two ids of one side name the same video, and, with `strict`,
    when any video lacks a partner (the message gives counts and the first few names).
    """
    features = [str(v) for v in feature_ids]
    annotated = [str(v) for v in annotation_ids]
    annotation_by_key = _by_video(annotated, "annotations")
    feature_by_key = _by_video(features, "features", "; remove one")
    pairs = {name: annotation_by_key[key] for key, name in feature_by_key.items() if key in annotation_by_key}
    missing = [name for key, name in feature_by_key.items() if key not in annotation_by_key]
    unfeatured = sorted(set(annotated) - set(pairs.values()))
    result = IdMatch(pairs, sorted(missing), unfeatured)
    if strict and (missing or unfeatured):
        raise AnnotationError(f"feature and annotation ids differ (--strict): {result.summary()}")
    return result
