"""Temporal annotations: every common file format read into one model, times in seconds.

Formats (detected from the file, or forced with `fmt`); each reader registers itself with
`register_format`, which also gives `detect_format` and `--annotation-format` their choices:
- `activitynet`: ActivityNet-style JSON `{"database": {vid: {subset, duration, fps, annotations:
  [{segment: [s, e], label, label_id?}]}}}`, including ActionFormer's `thumos14.json`, G-TAD's
  ground truth (segments as strings) and SoLa's synthetic `annotations.json` (extra per-video
  `feat_stride` / `num_frames`).
- `gtad`: G-TAD's THUMOS CSV `video,type,type_idx,start,end,startFrame,endFrame`.
- `tsp`: TSP's ground-truth CSV (`video-name,t-start,t-end,action-label,...`), optionally with its
  metadata CSV (`filename,video-duration,fps,video-frames`).
- `bsn`: BSN/BMN `anet_anno_action.json` + `video_info_new.csv` (subset per video).

Snippet time conventions (see `SnippetGrid`): a fixed stride (ActionFormer: snippet i is centred
at `(i * feat_stride + num_frames / 2) / fps` seconds) or features rescaled to T snippets spread
evenly over the duration (ActivityNet's 100 snippets: snippet i is centred at `(i + 0.5) * D / T`).

Modules: `model` (the `Annotations` model), `formats` (the registry), `parse` (helpers the readers
share), one module per format (`activitynet`, `gtad`, `tsp`, `bsn`), `load` (`load_annotations`,
`detect_format`), `grid` (seconds <-> snippet index), `labels` (snippet labels) and `ids` (feature id
<-> annotation id matching). Importing a format's module registers it; the order below is the order
`FORMATS` lists them in.
"""

from __future__ import annotations

from sola.data.annotations.model import (AMBIGUOUS, Annotations, Segment, VideoAnnotation, canonical_subset,
                                         clean_video_id)
from sola.data.annotations.formats import FORMATS, AnnotationFormat, Reader, register_format
from sola.data.annotations import activitynet as _activitynet  # noqa: F401  (each import registers its format)
from sola.data.annotations import gtad as _gtad  # noqa: F401
from sola.data.annotations import tsp as _tsp  # noqa: F401
from sola.data.annotations import bsn as _bsn  # noqa: F401
from sola.data.annotations.gtad import GTAD_COLUMNS
from sola.data.annotations.tsp import TSP_COLUMNS
from sola.data.annotations.load import (BAD_SEGMENT_POLICIES, DEFAULT_BAD_SEGMENTS, OVERRUN_SLACK, bad_segment_note,
                                        detect_format, load_annotations)
from sola.data.annotations.grid import SnippetGrid, grid_for
from sola.data.annotations.labels import SnippetLabels, snippet_labels
from sola.data.annotations.ids import IdMatch, match_ids

__all__ = [
    "AMBIGUOUS",
    "Segment",
    "VideoAnnotation",
    "Annotations",
    "canonical_subset",
    "clean_video_id",
    "Reader",
    "AnnotationFormat",
    "FORMATS",
    "register_format",
    "GTAD_COLUMNS",
    "TSP_COLUMNS",
    "BAD_SEGMENT_POLICIES",
    "DEFAULT_BAD_SEGMENTS",
    "bad_segment_note",
    "OVERRUN_SLACK",
    "load_annotations",
    "detect_format",
    "SnippetGrid",
    "grid_for",
    "SnippetLabels",
    "snippet_labels",
    "IdMatch",
    "match_ids",
]
