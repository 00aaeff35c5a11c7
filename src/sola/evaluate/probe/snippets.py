"""The probe's snippets: which snippets of which videos each split holds, planned from the stores' shapes
and the annotations (subsampling by `data.videos` and `data.chunk`, the cap of `data.max_snippets` and
`data.max_bytes`), for two splits of a store (`collect_snippets`) or a held-out part of one subset
(`collect_heldout_snippets`). A plan only, no torch: `sola.evaluate.probe.protocols.build_matrix` reads it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from sola.core.errors import AnnotationError, ConfigError
from sola.data.annotations import Annotations, canonical_subset, grid_for, match_ids, snippet_labels
from sola.evaluate.probe.config import ProbeConfig, ProbeDataConfig, probe_config


@dataclass
class SnippetSet:
    """The snippets of one split that a probe sees: per video, the chosen rows and their targets.

    A plan only: `build_matrix` reads (and adapts) the features one video at a time.
    """

    store: object  # the FeatureStore the rows are read from
    video_ids: list[str]  # annotation ids
    feature_ids: list[str]  # the store's ids of the same videos
    rows: list[np.ndarray]  # each (n_v,) int64, increasing: the chosen snippets of the video
    action: list[np.ndarray]  # each (n_v,) bool
    boundary: list[np.ndarray]  # each (n_v,) bool: within +-k of a transition
    available: int = 0  # usable snippets (not ambiguous-only) of the split's videos before subsampling
    videos_available: int = 0  # videos of the split before `data.videos`
    cap: int = 0  # the most snippets the split may hold (`snippet_cap`; 0: no cap)

    @property
    def num_snippets(self) -> int:
        """Snippets chosen over all videos."""
        return int(sum(len(r) for r in self.rows))


@dataclass
class ProbeData:
    """The probe's inputs: `train`/`val` SnippetSets and where they came from."""

    train: SnippetSet
    val: SnippetSet
    train_subset: str
    val_subset: str
    boundary_k: int
    skipped: list[str] = field(default_factory=list)  # annotated videos without features
    holdout: float | None = None  # set when train/val are two parts of one subset (`collect_heldout_snippets`)


def boundary_mask(action: np.ndarray, k: int = 2) -> np.ndarray:
    """Snippets (T,) within +-k of an action/background transition.

    A transition between snippets i-1 and i marks the k snippets on each side: i-k .. i+k-1.
    Video ends are not transitions. `k` >= 1.
    """
    action = np.asarray(action, dtype=bool)
    length = len(action)
    change = np.flatnonzero(action[1:] != action[:-1]) + 1  # first snippet after each transition
    near = np.zeros(length + 1, dtype=np.int64)
    np.add.at(near, np.clip(change - k, 0, length), 1)
    np.add.at(near, np.clip(change + k, 0, length), -1)
    return np.cumsum(near[:length]) > 0


def choose_splits(annotations: Annotations, video_ids, train: str | None, val: str | None) -> tuple[str, str]:
    """Training and validation subset names: the given ones, else training/validation, else validation/test.

    THUMOS14 has no training videos with temporal annotations, so its probe trains on validation and
    measures on test. Raises `AnnotationError` when neither pair is present among `video_ids`.
    """
    present = {canonical_subset(annotations[v].subset) for v in video_ids}
    if not present:
        raise AnnotationError(
            f"{getattr(annotations, 'source', 'annotations')}: no annotated video has features (no video id "
            "matches a feature file); compare the ids with `sola inspect FEATURES --annotations ANN`"
        )
    if train and val:
        return canonical_subset(train), canonical_subset(val)
    for pair in (("training", "validation"), ("validation", "test")):
        if set(pair) <= present:
            return (canonical_subset(train) if train else pair[0]), (canonical_subset(val) if val else pair[1])
    raise AnnotationError(
        f"cannot tell the probe's training and validation subsets from {sorted(present)}; "
        "name them with --train-subset and --val-subset"
    )


def collect_snippets(
    store,
    annotations: Annotations,
    train_subset: str | None = None,
    val_subset: str | None = None,
    config: ProbeConfig | None = None,
    progress: bool = False,
) -> ProbeData:
    """Plan the probe's snippets of every annotated video of both splits of `store` (their shapes and
    targets; `build_matrix` reads the features).

    Snippet times follow `grid_for` (a fixed stride when the annotations or `config.data` give one,
    else T snippets over the duration); `data.boundary_k` marks the boundary snippets. Raises
    `AnnotationError` if a split has no video with features, `ConfigError` for a bad config.
    """
    config = probe_config(config)
    matched = match_ids(store.video_ids(), annotations.keys()).require_some(getattr(annotations, "source", "annotations"))
    by_annotation = {a: f for f, a in matched.pairs.items()}
    train_name, val_name = choose_splits(annotations, list(by_annotation), train_subset, val_subset)
    sets = {}
    for name in (train_name, val_name):
        chosen = sorted(v for v in by_annotation if canonical_subset(annotations[v].subset) == name)
        if not chosen:
            raise AnnotationError(
                f"no video of subset {name!r} has features ({matched.summary()}); check the store and --*-subset"
            )
        sets[name] = read_snippets(store, annotations, chosen, by_annotation, config, progress,
                                   f"planning {name}", stream=len(sets))
    return ProbeData(sets[train_name], sets[val_name], train_name, val_name, config.data.boundary_k,
                     skipped=matched.annotations_without_features)


def read_snippets(
    store,
    annotations: Annotations,
    video_ids: list[str],
    feature_ids: dict[str, str],
    config: ProbeConfig | None = None,
    progress: bool = False,
    desc: str = "reading",
    stream: int = 0,
) -> SnippetSet:
    """The SnippetSet of `video_ids` (annotation ids, in this order); `feature_ids` maps them to store ids.

    Reads only each video's shape. The grid, `boundary_k` and the subsample (`videos`, `chunk`, and
    the cap of `snippet_cap`, drawn with `data.seed` and `stream`) come from `config.data` (None: the defaults).
    """
    data = (config if config is not None else ProbeConfig()).data
    rng = np.random.default_rng([data.seed, stream])
    chosen = list(video_ids)
    if data.videos < 1:
        count = max(1, int(data.videos * len(chosen) + 0.5))
        chosen = [chosen[i] for i in sorted(rng.choice(len(chosen), count, replace=False))]
    snippet_set = SnippetSet(store, [], [], [], [], [], videos_available=len(video_ids))
    width = 1
    for video_id in tqdm(chosen, desc=desc, disable=None if progress else True, leave=False):
        shape = store.shape(feature_ids[video_id])
        length, width = int(shape[0]), max(width, int(shape[1]))
        video = annotations[video_id]
        labels = snippet_labels(video, length, grid_for(video, length, data.feat_stride, data.num_frames, data.fps))
        keep = labels.action | ~labels.ambiguous
        snippet_set.available += int(keep.sum())
        rows = draw_per_chunk(np.flatnonzero(keep), data.chunk, rng)
        snippet_set.video_ids.append(video_id)
        snippet_set.feature_ids.append(feature_ids[video_id])
        snippet_set.rows.append(rows)
        snippet_set.action.append(labels.action[rows])
        snippet_set.boundary.append(boundary_mask(labels.action, data.boundary_k)[rows])
    snippet_set.cap = snippet_cap(data, width)
    if snippet_set.cap and snippet_set.num_snippets > snippet_set.cap:
        cap_snippets(snippet_set, snippet_set.cap, rng)
    return snippet_set


def snippet_cap(data: ProbeDataConfig, dim: int) -> int:
    """The most snippets one split may hold: `data.max_snippets`, and as many rows of `dim` float32
    as `data.max_bytes` holds (at least 1); 0 when both are 0 (no cap).

    The byte bound keeps both matrices at about 2 x 750 MB by default whatever the dimension
    (91,552 snippets at 2048-d, 400,000 up to 468-d).
    """
    caps = [data.max_snippets] if data.max_snippets else []
    if data.max_bytes:
        caps.append(max(1, data.max_bytes // (4 * dim)))
    return min(caps, default=0)


def draw_per_chunk(rows: np.ndarray, chunk: int, rng: np.random.Generator) -> np.ndarray:
    """One random entry of `rows` (increasing snippet indices) per chunk of `chunk` snippets
    (`rows // chunk`); `rows` itself for `chunk` 1."""
    if chunk == 1 or len(rows) == 0:
        return rows
    group = rows // chunk
    order = np.lexsort((rng.random(len(rows)), group))  # by chunk, randomly within it
    first = np.r_[True, group[order][1:] != group[order][:-1]]
    return np.sort(rows[order[first]])


def cap_snippets(snippet_set: SnippetSet, cap: int, rng: np.random.Generator) -> None:
    """Keep a uniform random `cap` of the chosen snippets over all videos, in place (order kept)."""
    sizes = np.array([len(r) for r in snippet_set.rows])
    keep = np.zeros(sizes.sum(), dtype=bool)
    keep[rng.choice(len(keep), cap, replace=False)] = True
    parts = np.split(keep, np.cumsum(sizes)[:-1])
    for name in ("rows", "action", "boundary"):
        values = getattr(snippet_set, name)
        setattr(snippet_set, name, [v[mask] for v, mask in zip(values, parts)])


def on_store(snippet_set: SnippetSet, store, annotations: Annotations) -> SnippetSet:
    """The same plan read from another store of the same videos (e.g. one `sola transform` wrote).

    Raises `AnnotationError` when a video is missing there or has another length.
    """
    matched = match_ids(store.video_ids(), annotations.keys())
    by_annotation = {a: f for f, a in matched.pairs.items()}
    for video_id, feature_id in zip(snippet_set.video_ids, snippet_set.feature_ids):
        other = by_annotation.get(video_id)
        if other is None or store.shape(other)[0] != snippet_set.store.shape(feature_id)[0]:
            raise AnnotationError(
                f"{store.path} does not hold the same annotated videos as {snippet_set.store.path} "
                f"({video_id!r} {'is missing' if other is None else 'has another length'}); "
                "transform the whole store with `sola transform`"
            )
    feature_ids = [by_annotation[v] for v in snippet_set.video_ids]
    return dataclasses.replace(snippet_set, store=store, feature_ids=feature_ids)


def split_videos(
    video_ids, holdout: float = ProbeDataConfig.holdout, seed: int = ProbeDataConfig.seed
) -> tuple[list[str], list[str]]:
    """`(probe-train, held-out)` video ids: a seeded permutation of the sorted ids; both parts sorted.

    The held-out part has `round(holdout * n)` videos, at least 1 and at most n - 1; the same ids
    (in any order) and seed give the same split. Raises `AnnotationError` for fewer than 2 videos
    and `ConfigError` for a `holdout` outside (0, 1).
    """
    ids = sorted(set(video_ids))
    if not 0 < holdout < 1:
        raise ConfigError(f"the held-out share must lie strictly between 0 and 1, got {holdout}")
    if len(ids) < 2:
        raise AnnotationError(
            f"a held-out split needs at least 2 videos with features, got {len(ids)}: {ids}"
        )
    count = min(max(int(holdout * len(ids) + 0.5), 1), len(ids) - 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    held = sorted(ids[i] for i in order[:count])
    rest = sorted(ids[i] for i in order[count:])
    return rest, held


def selection_subset(annotations: Annotations, video_ids) -> str:
    """The subset a TAL head trains on among `video_ids`: training, else validation (THUMOS14).

    The same first choice as `choose_splits`. Raises `AnnotationError` when neither is present.
    """
    present = {canonical_subset(annotations[v].subset) for v in video_ids}
    for name in ("training", "validation"):
        if name in present:
            return name
    raise AnnotationError(
        f"no training or validation videos with features (subsets {sorted(present)}); name the subset to "
        "select on with --subset (the one the TAL head trains on, never the evaluation subset)"
    )


def collect_heldout_snippets(
    store,
    annotations: Annotations,
    subset: str | None = None,
    config: ProbeConfig | None = None,
    seed: int | None = None,
    progress: bool = False,
    heldout_subset: str | None = None,
) -> ProbeData:
    """Snippets of ONE subset, its videos split by `split_videos(data.holdout, seed)`: the probe trains
    on the rest and is measured on the held-out videos.

    `subset` defaults to `selection_subset` (training, else validation). Videos of other subsets are
    never read. `train_subset` and `val_subset` of the result both name `subset`; `holdout` is set.
    With `heldout_subset` (e.g. `sola splice`'s "holdout", whose clips the training videos never
    use), the probe trains on every video of `subset` and is measured on that subset instead.
    `config.data` gives the grid, `boundary_k`, `holdout` and the seed (`seed`, when given, replaces
    it). Raises `AnnotationError` when the subset has fewer than 2 videos with features.
    """
    config = probe_config(config, seed)
    matched = match_ids(store.video_ids(), annotations.keys()).require_some(getattr(annotations, "source", "annotations"))
    by_annotation = {a: f for f, a in matched.pairs.items()}
    name = canonical_subset(subset) if subset else selection_subset(annotations, list(by_annotation))
    chosen = [v for v in by_annotation if canonical_subset(annotations[v].subset) == name]
    if len(chosen) < 2:
        present = sorted({canonical_subset(annotations[v].subset) for v in by_annotation})
        raise AnnotationError(
            f"subset {name!r} has {len(chosen)} video(s) with features ({matched.summary()}; subsets with "
            f"features: {present}); a held-out split needs at least 2"
        )
    held_name = name
    if heldout_subset:
        held_name = canonical_subset(heldout_subset)
        held_ids = sorted(v for v in by_annotation if canonical_subset(annotations[v].subset) == held_name)
        if held_name == name or not held_ids:
            raise AnnotationError(
                f"held-out subset {heldout_subset!r} must be another subset than {name!r} with videos that have "
                f"features ({len(held_ids)} found)"
            )
        train_ids, holdout = sorted(chosen), None
    else:
        holdout = config.data.holdout
        train_ids, held_ids = split_videos(chosen, holdout, config.data.seed)
    train = read_snippets(store, annotations, train_ids, by_annotation, config, progress,
                          desc=f"planning {name} (probe-train)", stream=0)
    held = read_snippets(store, annotations, held_ids, by_annotation, config, progress,
                         desc=f"planning {held_name} (held out)", stream=1)
    skipped = [v for v in matched.annotations_without_features
               if canonical_subset(annotations[v].subset) in (name, held_name)]
    return ProbeData(train, held, name, held_name, config.data.boundary_k, skipped=skipped, holdout=holdout)


def subsample_summary(data: ProbeData) -> dict:
    """What the probe saw of each split: videos and snippets chosen of those available."""
    return {name: {"videos": len(part.video_ids), "videos_available": part.videos_available,
                   "snippets": part.num_snippets, "snippets_available": part.available, "cap": part.cap}
            for name, part in (("train", data.train), ("val", data.val))}
