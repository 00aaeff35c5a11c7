"""From videos to stored snippet features: `extract_videos` (many videos, resumable) and the
single-video helpers `encode_video` and `classify_video`. Clip geometry lives in `clips.py`, every
default in `sola.extract.config.ExtractConfig`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Iterable

import numpy as np

from sola.core.atomic import atomic_write_text, json_text
from sola.core.devices import resolve_device
from sola.core.errors import ExtractError
from sola.extract.clips import ClipSource, iter_clips, num_snippets
from sola.extract.config import OUTPUTS, ExtractConfig, ExtractionConfig
from sola.extract.encoder import SnippetEncoder, kinetics400_labels
from sola.extract.pipeline import BATCH, DONE, ERROR, START, decode_in_background
from sola.extract.video import find_videos, read_header

METADATA_NAME = "extract_metadata.json"
ENCODER_NAME = "i3d_kinetics400_rgb"
__all__ = ["extract_videos", "encode_video", "classify_video", "load_metadata", "ExtractSummary",
           "num_snippets", "iter_clips"]  # fmt: skip


def encode_video(
    path: str | os.PathLike,
    encoder: SnippetEncoder,
    fps: float | None = ExtractionConfig.fps,
    window: int = ExtractionConfig.window,
    stride: int = ExtractionConfig.stride,
    batch: int = ExtractionConfig.batch_size,
    output: str = ExtractionConfig.output,
    max_seconds: float | None = None,
    progress: bool | None = None,
    start: float = 0.0,
) -> tuple[np.ndarray, dict]:
    """Encode one video into per-snippet vectors.

    Returns `(array, info)`: array `(T, 1024)` features or `(T, 400)` logits (float32) and a dict
    with fps (of the resampled frames), window and stride (frames), num_frames, num_snippets,
    duration (seconds) and the source frame rate and count. `start` (seconds) skips the beginning
    and `max_seconds` stops after that much video (both for partial looks such as `classify`).
    Raises `ExtractError` if the video cannot be read.
    """
    from tqdm import tqdm

    if output not in OUTPUTS:
        raise ExtractError(f"unknown output {output!r}; use one of {', '.join(OUTPUTS)}")
    source = ClipSource(path, fps, window, stride, batch, start, max_seconds)
    outputs: list[np.ndarray] = []
    disable = True if progress is False else None  # None: bars only on a terminal
    bar = tqdm(total=source.expected or None, desc=source.path.name, unit="snippet", leave=False, disable=disable)
    with bar:
        for clips in source.batches():
            features, logits = encoder.encode(clips)
            outputs.append(features if output == "features" else logits)
            bar.update(len(clips))
    if not outputs:
        raise ExtractError(f"{source.path}: no frame could be decoded; re-download or re-encode it")
    array = np.concatenate(outputs).astype(np.float32, copy=False)
    return array, source.info(array.shape[0])


@dataclass
class ExtractSummary:
    """What `extract_videos` did: ids written, ids already done, and the failures it skipped."""

    out_dir: Path
    metadata: Path
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already complete from an earlier run
    reused: list[str] = field(default_factory=list)  # copied from another extraction (`reuse`), not encoded
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input path, one-line reason)
    warnings: list[str] = field(default_factory=list)  # e.g. a video that decoded short of its header
    snippets: int = 0  # snippets encoded in this run

    @property
    def ok(self) -> bool:
        """True when no video failed."""
        return not self.failed


def decoded_short(info: dict) -> bool:
    """True when a video decoded clearly shorter than its header says (a truncated download)."""
    return info["header_duration"] > 0 and info["duration"] < 0.9 * info["header_duration"] - 0.5


def grid_settings(fps: float | None, window: int, stride: int, output: str) -> dict:
    """What `sola extract` records of its settings (extract_metadata.json) and compares between runs."""
    return {
        "encoder": ENCODER_NAME,
        "output": output,
        "dim": OUTPUTS[output],
        "fps": None if fps is None else float(fps),
        "window": window,
        "stride": stride,
        "preprocessing": "short side resized to 256 (bilinear), centre crop 224x224, RGB scaled to [-1, 1]",
    }


def load_metadata(out_dir: str | os.PathLike) -> dict | None:
    """The extraction metadata of a feature directory, or None if it has none.

    Layout: `{"settings": {...}, "videos": {id: {fps, window, stride, num_frames, num_snippets,
    duration, source_fps, source_frames, source}}}`; snippet i of a video is centred at
    `(i * stride + window / 2) / fps` seconds. Raises `ExtractError` if the file is corrupt.
    """
    path = Path(out_dir) / METADATA_NAME
    if not path.is_file():
        return None
    try:
        metadata = json.loads(path.read_text())
        if not isinstance(metadata.get("settings"), dict) or not isinstance(metadata.get("videos"), dict):
            raise ValueError("missing settings or videos")
    except (OSError, ValueError, AttributeError) as exc:
        raise ExtractError(f"{path}: unreadable extraction metadata ({exc}); delete it to re-extract") from None
    return metadata


class _MetadataFile:
    """The metadata JSON of an output directory, rewritten atomically at most every `interval` s.

    Rewriting after every video would cost O(videos^2) on large datasets; a video whose `.npy`
    landed but whose entry did not (a kill between flushes) is simply extracted again.
    """

    def __init__(self, path: Path, metadata: dict, interval: float = 10.0) -> None:
        self.path, self.metadata, self.interval = path, metadata, interval
        self.last = time.monotonic()
        self.dirty = not path.is_file()

    def add(self, video_id: str, info: dict) -> None:
        self.metadata["videos"][video_id] = info
        self.dirty = True
        if time.monotonic() - self.last >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.dirty:
            atomic_write_text(self.path, json_text(self.metadata, indent=1, sort_keys=True) + "\n")
            self.dirty, self.last = False, time.monotonic()


def _store_video(path: Path, video_id: str, chunks: list[np.ndarray], source: ClipSource, writer, metadata_file,
                 summary: "ExtractSummary") -> None:  # fmt: skip
    """Write one finished video (`.npy` first, then its metadata entry) and count it."""
    array = np.concatenate(chunks).astype(np.float32, copy=False)  # (T, C)
    info = source.info(array.shape[0])
    if decoded_short(info):
        summary.warnings.append(
            f"{path}: decoded {info['duration']:.2f} s of the {info['header_duration']:.2f} s its "
            "header states; the file may be truncated (features cover the decoded part)"
        )
    writer.write(video_id, array)
    metadata_file.add(video_id, {**info, "source": str(path.resolve())})
    summary.extracted.append(video_id)
    summary.snippets += array.shape[0]


def extract_videos(
    inputs: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    config: ExtractConfig | None = None,
    encoder: SnippetEncoder | None = None,
    progress: bool | None = None,
    reuse: str | os.PathLike | None = None,
) -> ExtractSummary:
    """Encode videos into `out_dir/<stem>.npy` `(T, 1024)` float32 plus `out_dir/extract_metadata.json`.

    `inputs` are video files and/or directories (their video files, not recursive). Settings from
    `config` (None: the defaults): its `extract` section (`fps` None keeps each video's own frame
    rate; window and stride count resampled frames; `workers` threads decode videos in parallel
    while the encoder runs, None: 8 on a GPU, where decoding is the bottleneck, else 2) and its
    `encoder` section (device, weights cache; unused when `encoder` is given). Videos already in
    the metadata with their `.npy` present are skipped (resumable); unreadable ones are reported
    in `summary.failed` and the run goes on. Files are written atomically, each `.npy` before its
    metadata entry. The output directory reads back with `sola.data.stores.npy.NpyStore`. Raises
    `ConfigError` for a bad config (before any work), `ExtractError` if `out_dir` holds an
    extraction with other settings, or the weights cannot be fetched.

    `reuse`: another `sola extract` output (an input: never written) whose features of these videos
    are copied into `out_dir` instead of encoded again (`summary.reused`); it must hold the same
    settings (`reusable_metadata`, checked before any work). A video is taken from it when its id is
    there, intact, and made from the same file (`same_source`); the others are encoded.
    """
    from sola.data.stores.npy import NpyWriter

    config = (config if config is not None else ExtractConfig()).validate()
    grid = config.extract
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    target = encoder.device if encoder is not None else resolve_device(config.encoder.device)  # a bad name fails here
    workers = _decode_workers(grid.workers, target)
    out_dir = Path(out_dir)
    settings = grid_settings(grid.fps, grid.window, grid.stride, grid.output)
    metadata = _matching_metadata(out_dir, settings)
    reused = reusable_metadata(reuse, settings) if reuse is not None else None
    writer = NpyWriter(out_dir)
    summary = ExtractSummary(out_dir, out_dir / METADATA_NAME)
    videos, problems = find_videos(list(inputs))
    summary.failed.extend((str(path), message) for path, message in problems)
    todo = _videos_to_do(videos, metadata, writer, summary)
    metadata_file = _MetadataFile(summary.metadata, metadata)
    if reused is not None:
        _copy_reused(todo, Path(reuse), reused, writer, metadata_file, summary)
    jobs = [(video_id, partial(ClipSource, path, grid.fps, grid.window, grid.stride, grid.batch_size))
            for video_id, path in todo.items()]  # fmt: skip
    encode = _LazyEncoder(encoder, config.encoder.device, config.encoder.cache, grid.output)
    _encode_videos(todo, jobs, workers, encode, writer, metadata_file, summary, progress)
    return summary


def _decode_workers(workers: int | None, target) -> int:
    """The number of decoding threads: as configured, else 8 on a GPU (decoding is the bottleneck), else 2."""
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if target.type == "cuda" else 2
    return workers


def _matching_metadata(out_dir: Path, settings: dict) -> dict:
    """The metadata already in `out_dir`, or a new one; raises `ExtractError` if it has other settings."""
    metadata = load_metadata(out_dir) or {"settings": settings, "videos": {}}
    if metadata["settings"] != settings:
        differ = sorted(k for k in settings if metadata["settings"].get(k) != settings[k])
        raise ExtractError(
            f"{out_dir} holds features extracted with other settings ({', '.join(differ)}); "
            "use another --out or the same settings"
        )
    return metadata


GRID = ("encoder", "output", "dim", "fps", "window", "stride", "preprocessing")  # what makes two extractions alike


def grid_differences(found: dict, wanted: dict) -> list[str]:
    """The extraction settings in which `found` differs from `wanted`: ["window 32, not 16", ...]."""
    def shown(value):
        return "each video's own frame rate" if value is None else value

    return [f"{key} {shown(found.get(key))}, not {shown(wanted.get(key))}" for key in GRID
            if found.get(key) != wanted.get(key)]


def reusable_metadata(store: str | os.PathLike, settings: dict, wanted: str = "the one asked for",
                      name: str = "") -> dict:
    """The metadata of `sola extract` output `store` when it was made with `settings` (encoder, output, frame
    rate, window, stride, preprocessing); raises `ExtractError` (one line: the settings that differ, or
    that `store` is no `sola extract` output). `wanted` names what `settings` are for, `name` the flag that
    gave `store` ("--features")."""
    store = Path(store)
    given = f"{name} {store}" if name else str(store)
    omit = f"leave out {name}" if name else "give none"
    if not store.is_dir():
        raise ExtractError(f"{given}: no such feature directory; give the --out folder of a `sola extract` run "
                           f"(or {omit} to extract the videos)")
    metadata = load_metadata(store)
    if metadata is None:
        raise ExtractError(f"{given} has no {METADATA_NAME}: not a `sola extract` output, so its grid is unknown; "
                           f"give the --out folder of a `sola extract` run (or {omit} to extract the videos)")
    differ = grid_differences(metadata["settings"], settings)
    if differ:
        raise ExtractError(f"{given} was extracted on another grid ({'; '.join(differ)}) than {wanted}; give "
                           f"features `sola extract` made with those settings (or {omit} to extract the videos)")
    return metadata


def same_source(path: Path, info: dict) -> bool:
    """Whether features recorded with `info` (an entry of the metadata) were made from the video at `path`:
    the same file, or one whose header states the same frame rate and duration (a moved or copied file)."""
    from sola.extract.video import read_header

    recorded = info.get("source")
    if isinstance(recorded, str) and Path(recorded) == path.resolve():
        return True
    try:
        header = read_header(path)
    except ExtractError:
        return False  # unreadable: the extraction reports it
    return (info.get("source_fps") is not None and abs(float(info["source_fps"]) - header.fps) < 1e-6
            and abs(float(info.get("header_duration", -1.0)) - round(header.duration, 6)) < 1e-6)


def _copy_reused(todo: dict[str, Path], store: Path, metadata: dict, writer, metadata_file,
                 summary: ExtractSummary) -> None:
    """Copy the features `store` (another extraction with the same settings) holds of videos in `todo` into the
    output, removing them from `todo`; a damaged one, or one made from another file, stays to be encoded."""
    from sola.core.errors import StoreError
    from sola.data.stores.npy import load_npy

    for video_id, path in list(todo.items()):
        info = metadata["videos"].get(video_id)
        file = store / f"{video_id}.npy"
        if not isinstance(info, dict) or not file.is_file():
            continue
        if not same_source(path, info):
            summary.warnings.append(f"{store} holds features of another video named {video_id!r} "
                                    f"({info.get('source', 'source unknown')}); extracting {path}")
            continue
        try:
            array = load_npy(file)
        except StoreError as exc:
            summary.warnings.append(f"{str(exc).rsplit('; ', 1)[0]}; extracting {path} again")
            continue
        dim = metadata["settings"].get("dim")
        if array.dtype != np.float32 or array.ndim != 2 or array.shape != (info.get("num_snippets"), dim):
            summary.warnings.append(f"{file} holds {array.dtype} {array.shape}, not the {info.get('num_snippets')} "
                                    f"x {dim} float32 its metadata states; extracting {path} again")
            continue
        writer.write(video_id, array)
        metadata_file.add(video_id, dict(info))
        summary.reused.append(video_id)
        del todo[video_id]


def _videos_to_do(videos: list[Path], metadata: dict, writer, summary: ExtractSummary) -> dict[str, Path]:
    """The videos still to extract, by id; finished ones go to `summary.skipped`, name clashes to `failed`."""
    todo: dict[str, Path] = {}
    seen: dict[str, Path] = {}
    for path in videos:
        video_id = path.stem
        if video_id in seen:
            summary.failed.append((str(path), f"{path}: same name as {seen[video_id]}; rename one of them"))
        elif video_id in metadata["videos"] and writer.has(video_id) and _kept(video_id, metadata, writer, summary):
            seen[video_id] = path
            summary.skipped.append(video_id)
        else:
            seen[video_id] = path
            todo[video_id] = path
    return todo


def _kept(video_id: str, metadata: dict, writer, summary: ExtractSummary) -> bool:
    """Whether the finished `.npy` of an earlier run still reads back as its metadata says (float32, the
    recorded snippet count); a damaged one (truncated, replaced) is extracted again, with a warning."""
    problem = writer.intact(video_id, (metadata["videos"][video_id].get("num_snippets"), None), np.float32)
    if problem is not None:
        summary.warnings.append(f"{problem}; extracting it again")
    return problem is None


class _LazyEncoder:
    """Encodes clip batches into the chosen output, loading the model on the first batch if none is given."""

    def __init__(self, encoder: SnippetEncoder | None, device: str | None, cache, output: str) -> None:
        self.encoder, self.device, self.cache, self.output = encoder, device, cache, output

    def __call__(self, clips: np.ndarray) -> np.ndarray:
        if self.encoder is None:  # loaded once a video has decoded: bad inputs alone never load it
            self.encoder = SnippetEncoder(self.device, self.cache)
        features, logits = self.encoder.encode(clips)
        return features if self.output == "features" else logits


def _encode_videos(todo: dict[str, Path], jobs: list, workers: int, encode: _LazyEncoder, writer, metadata_file,
                   summary: ExtractSummary, progress: bool | None) -> None:  # fmt: skip
    """Decode `jobs` in background threads, encode their batches and store or report each video as it ends."""
    from tqdm import tqdm

    disable = True if progress is False else None  # None: bars only on a terminal
    outputs: dict[str, list[np.ndarray]] = {}
    bars: dict[str, tqdm] = {}
    overall = tqdm(total=len(jobs), desc="videos", unit="video", disable=disable)
    events = decode_in_background(jobs, workers)
    try:
        for video_id, kind, payload in events:
            path = todo[video_id]
            if kind == START:
                outputs[video_id] = []
                bars[video_id] = tqdm(
                    total=payload.expected or None, desc=path.name, unit="snippet", leave=False, disable=disable
                )
            elif kind == BATCH:
                outputs[video_id].append(encode(payload))
                bars[video_id].update(len(payload))
            elif kind in (DONE, ERROR):
                if video_id in bars:
                    bars.pop(video_id).close()
                overall.update(1)
                chunks = outputs.pop(video_id, [])
                if kind == DONE and chunks:
                    _store_video(path, video_id, chunks, payload, writer, metadata_file, summary)
                else:
                    message = payload if kind == ERROR else f"{path}: no frame could be decoded; re-encode it"
                    summary.failed.append((str(path), message))
    finally:
        events.close()  # stops the decoding threads, also on an error or Ctrl-C here
        metadata_file.flush()  # what finished is recorded, also when interrupted
        writer.close()  # removes temporaries that killed earlier runs left behind
        for bar in bars.values():
            bar.close()
        overall.close()


def classify_video(
    path: str | os.PathLike,
    config: ExtractConfig | None = None,
    encoder: SnippetEncoder | None = None,
) -> list[tuple[str, float]]:
    """Kinetics-400 top-k `(class name, probability)` for a video, from clip-averaged logits.

    Settings from `config.classify` (None: the defaults): the video is cut into non-overlapping
    clips of `window` frames at `fps` (25 = Kinetics), the 400 logits are averaged over clips and
    passed through a softmax; `start` and `max_seconds` (seconds) restrict it to a part of the
    video. The model comes from `config.encoder` unless `encoder` is given. Raises `ConfigError`
    for a bad config, `ExtractError` if the video cannot be read.
    """
    import torch

    config = (config if config is not None else ExtractConfig()).validate()
    settings = config.classify
    if encoder is None:
        read_header(path)  # fail on a bad file before loading the model
        encoder = SnippetEncoder(config.encoder.device, config.encoder.cache)
    logits, _ = encode_video(
        path, encoder, settings.fps, settings.window, settings.window, settings.batch_size, "logits",
        settings.max_seconds, progress=False, start=settings.start,
    )
    probabilities = torch.softmax(torch.from_numpy(logits.mean(axis=0)), dim=0)
    values, indices = probabilities.topk(min(settings.topk, probabilities.numel()))
    labels = kinetics400_labels()
    return [(labels[i], float(p)) for p, i in zip(values.tolist(), indices.tolist())]
