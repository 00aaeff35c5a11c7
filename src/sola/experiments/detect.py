"""From videos to detections: extract I3D features, apply a SoLa adapter, run a trained head.

`detect_videos` chains the library's stages, each resumable on its own:

    videos --sola extract--> OUT/features --sola transform (with --adapter)--> OUT/features_sola
           --TAL head--> OUT/detections.json (official ActivityNet format, seconds, class names)
                         OUT/timelines/<video>.png (detections above, ground truth beneath)

The head's run records what it was trained on (`sola.tal.features`); features are extracted on
that grid (frames per snippet, stride, frame-rate rule), and a head trained on other features
(another encoder or width, with or without SoLa) is refused before any video is decoded. Features
a `sola extract` output on that grid already holds (`features=`, else the head's training store)
are copied into OUT/features instead of extracted again (`reusable_store`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sola.core.atomic import atomic_write_text, json_text
from sola.core.errors import ConfigError, ExtractError, SolaError
from sola.data.annotations import match_ids

DETECTIONS = "detections.json"
TIMELINES = "timelines"


@dataclass
class DetectSummary:
    """What `detect_videos` did: where the detections are, the pictures, the videos it skipped."""

    out_dir: Path
    detections: Path
    predictions: dict  # the official ActivityNet prediction dict that was written
    timelines: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (video path, one-line reason)
    notes: list[str] = field(default_factory=list)

    def top(self, count: int = 10, min_score: float = 0.0) -> list[tuple[str, float, float, str, float]]:
        """The `count` best detections over all videos: `(video, start s, end s, label, score)`."""
        rows = [(video, *entry["segment"], entry["label"], entry["score"])
                for video, entries in self.predictions["results"].items() for entry in entries
                if entry["score"] >= min_score]
        return sorted(rows, key=lambda row: -row[4])[:count]


def extraction_settings(record: dict | None, input_dim: int) -> tuple[dict, list[str]]:
    """The `sola extract` settings a head's features record asks for, and notes on what was assumed."""
    from sola.extract.config import ExtractionConfig

    if record is None:
        defaults = ExtractionConfig()
        return ({"fps": defaults.fps, "window": defaults.window, "stride": defaults.stride, "output": defaults.output},
                [f"the head records no features (a run older than features.json); assuming `sola extract` defaults "
                 f"({input_dim}-d)"])
    return {"fps": record.get("fps"), "window": int(record["window"]), "stride": int(record["stride"]),
            "output": record.get("output", "features")}, []


def detect_videos(
    inputs: str | os.PathLike | list,
    head: str | os.PathLike,
    out_dir: str | os.PathLike,
    adapter: str | os.PathLike | None = None,
    annotations=None,
    min_score: float = 0.1,
    device: str = "auto",
    progress: bool | None = None,
    encoder=None,
    cache: str | None = None,
    features: str | os.PathLike | None = None,
) -> DetectSummary:
    """Detect actions in videos with a trained head (and optionally a SoLa adapter).

    `inputs`: video files and/or directories. `head`: a `sola tal train` run directory. `adapter`:
    an adapter file or `sola train` run directory; the head must have been trained on features
    of that adapter. `annotations`: `sola.data.annotations.Annotations` for ground truth beneath the
    timelines (optional). `min_score`: detections below it are not drawn (all are written).
    `encoder`: a loaded `SnippetEncoder` (tests, reuse); `cache`: the weights cache. Writes
    OUT/detections.json (ActivityNet format: seconds, class names) and OUT/timelines/*.png.
    `features`: a `sola extract` output on the head's grid (an input, never written) whose features
    of these videos are copied into OUT/features instead of extracted again; None: the store the
    head was trained on, when it is one (`reusable_store`). Raises `ConfigError` (one line) when
    the head does not fit the features `sola detect` extracts or the adapter given, `ExtractError`
    when `features` was extracted on another grid or no video could be read.
    """
    from sola.adapt.adapter import adapter_digest, load_adapter
    from sola.adapt.transform import transform_store
    from sola.core.devices import resolve_device
    from sola.data.stores import open_store
    from sola.extract import extract_videos
    from sola.extract.config import OUTPUTS, ExtractConfig
    from sola.extract.extract import ENCODER_NAME
    from sola.tal.features import check_detectable, extraction_metadata, read_features
    from sola.tal.run import load_run

    head, out_dir = Path(head), Path(out_dir)
    target = resolve_device(device)
    model, config, names = load_run(head, device=str(target))
    record = read_features(head)
    settings, notes = extraction_settings(record, config.data.input_dim)
    fitted = load_adapter(adapter) if adapter is not None else None
    if record is not None:
        extracted = {"encoder": ENCODER_NAME, "dim": OUTPUTS[settings["output"]], **settings}
        check_detectable(record, str(head), extracted, adapter_digest(fitted) if fitted is not None else None)
    elif config.data.input_dim != OUTPUTS[settings["output"]]:
        raise ConfigError(f"{head} takes {config.data.input_dim}-d features (data.input_dim), but `sola detect` "
                          f"extracts {OUTPUTS[settings['output']]}-d Kinetics-400 I3D RGB features; train the head "
                          "on `sola extract` features to detect with it")
    extract_config = ExtractConfig.from_dict({"extract": settings, "encoder": {"device": device, "cache": cache}})
    reuse = reusable_store(features, record, out_dir / "features", extract_config, str(head))
    summary = extract_videos(inputs, out_dir / "features", extract_config, encoder=encoder, progress=progress,
                             reuse=reuse)
    if summary.reused:
        notes.append(f"reused the features of {len(summary.reused)} video{'s' if len(summary.reused) > 1 else ''} "
                     f"from {reuse} (extracted {len(summary.extracted)})")
    failed = list(summary.failed)
    done = set(summary.extracted) | set(summary.skipped) | set(summary.reused)
    if not done:
        reasons = "; ".join(reason for _, reason in failed[:3]) or "no video files found"
        raise ExtractError(f"no video could be read ({reasons}); point sola detect at video files or a folder of them")
    store = open_store(out_dir / "features")
    if fitted is not None:
        transform_store(fitted, store, out_dir / "features_sola", device=str(target), progress=bool(progress))
        store = open_store(out_dir / "features_sola")
    videos = extraction_metadata(store)["videos"]  # per video: fps, stride, window, duration
    predictions = _predict(model, config, names, store, {video_id: videos[video_id] for video_id in sorted(done)},
                           target, progress)
    atomic_write_text(out_dir / DETECTIONS, json_text(predictions, indent=1) + "\n")
    result = DetectSummary(out_dir, out_dir / DETECTIONS, predictions, failed=failed, notes=notes + summary.warnings)
    durations = {video_id: float(info["duration"]) for video_id, info in videos.items()}
    result.timelines = _timelines(predictions, durations, annotations, out_dir / TIMELINES, min_score, result.notes)
    return result


def reusable_store(given, record: dict | None, own: Path, config, head: str) -> Path | None:
    """The `sola extract` output whose features `sola detect` copies instead of extracting again: `given`
    (refused with `ExtractError`, one line, when it was extracted on another grid than the head's), else the
    store the head was trained on (or, for SoLa features, the store they were made from) when that is a
    `sola extract` output on the same grid; None: extract all.
    `own` (OUT/features, the cache of earlier runs) is never reused from: it is resumed."""
    from sola.extract.extract import grid_settings, reusable_metadata
    from sola.tal.features import extraction_dir

    grid = config.extract
    settings = grid_settings(grid.fps, grid.window, grid.stride, grid.output)
    if given is not None:
        if _same_dir(given, own):
            return None
        reusable_metadata(given, settings, f"the one the head {head} was trained on ({describe_settings(settings)})",
                          "--features")
        return Path(given)
    trained_on = record.get("store") if record else None
    try:
        source = extraction_dir(trained_on) if isinstance(trained_on, str) else None  # SoLa features: their input
        if source is None or _same_dir(source, own):
            return None
        reusable_metadata(source, settings)
    except SolaError:
        return None  # moved, damaged or re-extracted on another grid since: extract afresh
    return source


def describe_settings(settings: dict) -> str:
    """'1024-d i3d_kinetics400_rgb features, 16 frames every 16, each video's own frame rate'."""
    rate = "each video's own frame rate" if settings.get("fps") is None else f"resampled to {settings['fps']:g} fps"
    return (f"{settings.get('dim')}-d {settings.get('encoder')} {settings.get('output')}, {settings.get('window')} "
            f"frames every {settings.get('stride')}, {rate}")


def _same_dir(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _predict(model, config, names: list[str], store, videos: dict[str, dict], device, progress) -> dict:
    """The head's detections of `videos` (id -> extraction metadata: the grid and duration) of `store`."""
    from sola.tal.data import make_item
    from sola.tal.infer import predict_items, to_activitynet

    items = [make_item(video_id, store.read(video_id), np.zeros((0, 2)), [], fps=info["fps"],
                       feat_stride=info["stride"], num_frames=info["window"], duration=info["duration"])
             for video_id, info in videos.items()]
    detections = predict_items(model, items, config, batch_size=1, device=device, progress=progress)
    scoring = "class-agnostic proposals" if len(names) == 1 else "multi-class detection"
    return to_activitynet(detections, names, scoring)


def _timelines(predictions: dict, durations: dict[str, float], annotations, out: Path, min_score: float,
               notes: list[str]) -> list[Path]:
    """One timeline PNG per video; ground truth beneath where `annotations` know the video."""
    from sola.viz.plots import class_colors, timeline_figure

    results = predictions["results"]
    truth = {}
    if annotations is not None:
        match = match_ids(list(results), list(annotations))
        truth = {video_id: annotations[annotation_id] for video_id, annotation_id in match.pairs.items()}
        missing = sorted(set(results) - set(truth))
        if missing:
            notes.append(f"no ground truth for {len(missing)} of {len(results)} videos (e.g. {missing[0]!r})")
    labels = [e["label"] for entries in results.values() for e in entries]
    labels += [s.label for video in truth.values() for s in video.segments]
    colors = class_colors(labels)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for video_id, entries in sorted(results.items()):
        detections = [(e["segment"][0], e["segment"][1], e["label"], e["score"]) for e in entries]
        ground_truth = [(s.start, s.end, s.label) for s in truth[video_id].segments] if video_id in truth else []
        paths.append(timeline_figure(out / f"{video_id}.png", durations[video_id], detections, ground_truth,
                                     title=video_id, min_score=min_score, colors=colors))
    return paths
