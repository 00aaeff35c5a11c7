"""The paper's experiment on one feature store: train the head, predict, evaluate.

`build_items` turns a feature store plus `sola.data.annotations` into head items; `run_experiment`
trains on `data.train_subset`, predicts on `data.test_subset` and returns detection mAP (official
ActivityNet semantics via `sola.evaluate.metrics`) with the training seconds per epoch.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

from sola.adapt.sampling import CachedStore
from sola.core.devices import resolve_device
from sola.core.errors import AnnotationError, SolaNote, StoreError
from sola.core.runs import EVALUATION, PREDICTIONS, write_json
from sola.data.annotations import SnippetGrid, canonical_subset, grid_for, match_ids
from sola.evaluate.metrics.coverage import NO_FEATURES
from sola.tal.config import TalConfig
from sola.tal.data import StoredFeatures, make_item
from sola.tal.evaluation import AGNOSTIC_LABEL, evaluate_predictions, prediction_segments  # noqa: F401 (re-exported)
from sola.tal.features import extraction_grids, features_record
from sola.tal.infer import predict_items, prediction_dict, video_scores_for
from sola.tal.run import save_run
from sola.tal.train import seed_everything, train_head
from sola.tal.unified import unified_parts


def class_names(annotations, config: TalConfig) -> list[str]:
    """Class names in head order: sorted labels of all subsets, or ["action"] when class-agnostic.

    Raises `AnnotationError` naming the video and the segment when a (non-ambiguous) segment has no label.
    """
    if config.data.num_classes == 1:
        return [AGNOSTIC_LABEL]
    for video_id in annotations:
        for k, seg in enumerate(annotations[video_id].segments):
            if not seg.ambiguous and not seg.label:
                raise AnnotationError(
                    f"{getattr(annotations, 'source', 'annotations')}: video {video_id!r} segment {k} "
                    f"[{seg.start:g}, {seg.end:g}] has no label; label it, or train one class-agnostic head "
                    "(--set data.num_classes=1)"
                )
    return list(annotations.labels())


def fit_config_to_data(config: TalConfig, input_dim: int, num_labels: int) -> TalConfig:
    """Set the derived fields data.input_dim and data.num_classes from the data (1 stays class-agnostic).

    `note_fitted` says when the features' width replaced another data.input_dim of the config.
    """
    data = dataclasses.replace(config.data, input_dim=int(input_dim),
                               num_classes=1 if config.data.num_classes == 1 else int(num_labels))
    return dataclasses.replace(config, data=data).validate()


def note_fitted(config: TalConfig, fitted: TalConfig, where, stated: bool | None = None) -> None:
    """A `SolaNote` when the features' width replaced a data.input_dim that the config states (a 2048-d two-stream
    config given 1024-d `sola extract` features): the head is sized for the features `where` holds. `stated`: whether
    the config states data.input_dim (None: when it differs from the default, which configs that take the width from
    the data, e.g. tal_synthetic_cpu, leave as it is). Called once the data is checked, so that a refusal stays one
    line."""
    old, new = int(config.data.input_dim), int(fitted.data.input_dim)
    if stated is None:
        stated = old != type(config.data)().input_dim
    if stated and old != new:
        warnings.warn(f"the features in {where} are {new}-d, so the head takes data.input_dim {new}, not the "
                      f"config's {old}; if these are the features you meant, set data.input_dim: {new} in the config "
                      f"(or --set data.input_dim={new})", SolaNote, stacklevel=2)


def build_items(store, annotations, subset: str, config: TalConfig, names: list[str], lazy: bool = True,
                cache_dir: str | os.PathLike | None = None, key: str | None = None) -> list[dict[str, Any]]:
    """Head items of every video of `subset` that has features; seconds mapped onto each video's grid.

    Memory: with `lazy` (the default), the features of a random-access store (npy, HDF5) stay on disk
    and each batch reads only its windows (`StoredFeatures`); other layouts are read into memory,
    or with `cache_dir` copied once to float32 `.npy` files there and read by rows like any `.npy` store.

    The grid of a `sola extract` store (or a transform of one) is the one it was extracted on
    (its metadata: fps, stride, window per video). Otherwise it is fixed-stride when the annotation
    states `feat_stride` (synthetic data) or an fps is known (`data.default_fps` or the
    annotation's), using `data.feat_stride`/`data.num_frames`; otherwise the snippets are spread
    evenly over the annotated duration. Ambiguous segments are
    skipped. Raises `AnnotationError` when no video of the subset has features, naming the subsets the
    file has and the setting that chooses it (`key`: "--subset"; default: data.train_subset or
    data.test_subset, whichever names `subset`).
    """
    chosen = annotations.subset(subset)
    match = match_ids(store.video_ids(), list(chosen.keys()))
    if not match.pairs:
        raise AnnotationError(empty_subset_message(store, annotations, subset, key or _subset_key(config, subset)))
    index = {name: i for i, name in enumerate(names)}
    extracted = extraction_grids(store)
    items = []
    for feature_id, annotation_id in sorted(match.pairs.items()):
        video = chosen[annotation_id]
        feats = _features(store, feature_id, lazy, cache_dir)
        if feats.shape[1] != config.data.input_dim:
            raise StoreError(
                f"{store.source_of(feature_id)}: features of dim {feats.shape[1]}, but the head takes dim "
                f"{config.data.input_dim} (data.input_dim); use features of the extractor it was trained on"
            )
        length = feats.shape[0]
        fps = config.data.default_fps or video.fps
        if feature_id in extracted:  # the grid the features were extracted on, whatever the annotations say
            fps = extracted[feature_id]["fps"]
            grid = SnippetGrid.fixed(fps, extracted[feature_id]["stride"], extracted[feature_id]["window"])
        else:
            grid = grid_for(video, length, fps=fps or None, fallback_stride=config.data.feat_stride,
                            fallback_frames=config.data.num_frames)
        fps = fps or 1.0  # a rescaled grid: snippet units stand in for frames
        duration = video.duration if math.isfinite(video.duration) else float(grid.to_seconds(length - 0.5))
        segments, labels = [], []
        for seg in video.segments:
            if seg.ambiguous:
                continue
            if config.data.num_classes == 1:
                labels.append(0)
            elif seg.label in index:
                labels.append(index[seg.label])
            else:
                raise AnnotationError(f"video {annotation_id}: label {seg.label!r} is not among the classes {names}")
            segments.append([seg.start, seg.end])
        items.append(make_item(annotation_id, feats, segments, labels, fps=fps, feat_stride=grid.step * fps,
                               num_frames=2 * grid.offset * fps, duration=duration))
    return items


def _subset_key(config: TalConfig, subset: str) -> str:
    """The setting that chose `subset`: data.train_subset or data.test_subset (the first when both name it)."""
    if canonical_subset(subset) == canonical_subset(config.data.test_subset) != canonical_subset(
            config.data.train_subset):
        return "data.test_subset"
    return "data.train_subset"


def empty_subset_message(store, annotations, subset: str, key: str) -> str:
    """Why no video of `subset` can be used (none is annotated there, or none of those has features), the
    subsets the file has, and the fix: the setting `key` ("data.train_subset", "--subset") set to the subset
    holding the most videos with features."""
    source = getattr(annotations, "source", "annotations")
    present = annotations.subsets()
    listed = ", ".join(f"{name!r} ({count} videos)" for name, count in present.items()) or "none"
    counts = _featured_subsets(store, annotations)
    flag = key if key.startswith("-") else f"--set {key}"
    if counts:
        best = max(counts, key=lambda name: (counts[name], name))
        fix = f"choose a subset with {flag}{' ' if key.startswith('-') else '='}{best}"
    else:
        fix = f"choose a subset with {flag}{' ' if key.startswith('-') else '='}NAME once the ids match"
    return (f"{source}: no video of subset {subset!r} ({key}) has features in {store.path} "
            f"({features_by_subset(store, annotations)}); the file's subsets: {listed}; {fix}")


def _featured_subsets(store, annotations) -> dict[str, int]:
    """Subset name (as written in the file) -> how many of its videos have features in `store`."""
    match = match_ids(store.video_ids(), list(annotations.keys()))
    counts: dict[str, int] = {}
    for annotation_id in match.pairs.values():
        counts[annotations[annotation_id].subset] = counts.get(annotations[annotation_id].subset, 0) + 1
    return counts


def features_by_subset(store, annotations) -> str:
    """Where the store's videos are annotated: "12 videos with features are annotated: validation 8, test 4; 2 not
    at all", or why none matches (`IdMatch.none_match`)."""
    match = match_ids(store.video_ids(), list(annotations.keys()))
    if match.none_match():
        return match.none_match()
    counts: dict[str, int] = {}
    for annotation_id in match.pairs.values():
        counts[annotations[annotation_id].subset] = counts.get(annotations[annotation_id].subset, 0) + 1
    where = ", ".join(f"{name} {count}" for name, count in sorted(counts.items()))
    rest = len(match.features_without_annotation)
    return (f"{len(match.pairs)} videos with features are annotated: {where or 'none'}"
            + (f"; {rest} not at all" if rest else ""))


def _features(store, video_id: str, lazy: bool, cache_dir):
    """One video's features for an item: lazy on random-access stores (or from the cache), else in memory."""
    if lazy and store.random_access:
        return StoredFeatures(store, video_id, store.shape(video_id))
    if lazy and cache_dir is not None:
        cached = CachedStore(store, cache_dir)
        return StoredFeatures(cached, video_id, cached.window_source(video_id).shape)
    return store.read(video_id)


def run_experiment(store, annotations, config: TalConfig, seed: int = 0, out_dir: str | os.PathLike | None = None,
                   progress: bool | None = None, video_scores: dict[str, dict[str, float]] | None = None,
                   mode: str = "baseline", sm_weight: float = 1.0, sola_config=None) -> dict[str, Any]:
    """Train the head on `data.train_subset`, predict `data.test_subset`, return mAP and timing.

    `mode`: "baseline" (the head alone on these features), "unified" (a fresh SoLa adapter in
    front of the head, trained jointly with the TAL loss) or "unified+sm" (the same plus
    `sm_weight` x Similarity Matching); adapter settings from `sola_config` (`SoLaConfig`).

    store: a `FeatureStore` (T, C per video); annotations: `sola.data.annotations.Annotations`.
    `data.input_dim` and `data.num_classes` are taken from the data (num_classes 1 stays
    class-agnostic). With `out_dir`, writes the run (weights, config, classes, log) and
    `predictions.json` + `evaluation.json`. Returns {"mAP": {tiou: value}, "average_mAP",
    "seconds_per_epoch", "epochs", "scoring" (how segments were scored), "mode" (the mode above),
    "train_videos", "test_videos", "coverage" (`Coverage.to_dict()`: the test videos scored are those with
    features, K of the subset's N ground-truth videos), "history"}.
    """

    names = class_names(annotations, config)
    if not names:
        raise AnnotationError(f"{getattr(annotations, 'source', 'annotations')}: no labelled segments to train on")
    fitted = fit_config_to_data(config, store.dim(), len(names))
    train_items = build_items(store, annotations, fitted.data.train_subset, fitted, names)
    test_items = build_items(store, annotations, fitted.data.test_subset, fitted, names)
    note_fitted(config, fitted, store.path)
    config = fitted
    seed_everything(seed)  # the adapter's initial weights depend on the seed too
    adapter, auxiliary = unified_parts(mode, config.data.input_dim, sola_config)
    result = train_head(train_items, config, seed=seed, progress=progress, adapter=adapter, auxiliary=auxiliary,
                        auxiliary_weight=sm_weight)
    started = time.perf_counter()
    detections = predict_items(result.model, test_items, config, batch_size=config.train.batch_size,
                               device=resolve_device(config.train.device), progress=progress)
    infer_seconds = time.perf_counter() - started
    if video_scores is None:
        video_scores = video_scores_for(config)
    predictions, scoring = prediction_dict(detections, names, video_scores if config.data.num_classes == 1 else None,
                                           config.test.video_score_topk)
    fused = bool(predictions["external_data"]["used"])
    # the head can only predict videos with features: score those, and say how many of the subset they are
    metrics = evaluate_predictions(predictions, annotations, config.data.test_subset, config.test.tiou_thresholds,
                                   class_agnostic=names == [AGNOSTIC_LABEL] and not fused, covered_only=True,
                                   covered=[item["video_id"] for item in test_items], why=NO_FEATURES)
    summary = {
        "mAP": {f"{t:.2f}": float(v) for t, v in zip(metrics.tiou_thresholds, metrics.mAP)},
        "average_mAP": metrics.average_mAP,
        "seconds_per_epoch": result.seconds_per_epoch,
        "epochs": len(result.history),
        "infer_seconds": infer_seconds,
        "scoring": scoring,
        "mode": mode,
        "seed": seed,
        "train_videos": len(train_items),
        "test_videos": len(test_items),
        "coverage": metrics.coverage.to_dict(),
        "history": result.history,
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        save_run(out_dir, result.model, config, names, result.history, features_record(store, config))
        write_json(out_dir / PREDICTIONS, predictions)
        write_json(out_dir / EVALUATION, {**metrics.to_dict(), "scoring": scoring, "mode": mode,
                                              "seconds_per_epoch": result.seconds_per_epoch})
    return summary
