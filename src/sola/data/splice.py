"""Pseudo-untrimmed videos spliced from trimmed-clip features: a localization benchmark on real features.

Trimmed clips (one class each, the class read from the clip id: `push-up_12` -> `push-up`) are
concatenated into longer sequences. `actions` classes, drawn by the seed, are the actions; every
other class is background. Each clip slot is an action clip with probability `action_fraction`
(a class drawn uniformly among the actions, never the class of an action clip right before it, so
two instances never touch), else a background clip. Training, validation and holdout videos
draw from disjoint clips (each class's clips are split once), so a head is measured on clips it
never saw. Clips repeat across the videos of one subset, so a held-out part of the training videos
would share their clips: the "holdout" subset (its own clips) is where checkpoint selection
measures (`sola select --heldout-subset holdout`); the head trains on "training" only.

Written as an npy feature store (the clips' dtype kept) plus an ActivityNet-style
`annotations.json` on a fixed snippet grid: snippet i covers seconds [i, i + 1) * feat_stride / fps,
so an action made of snippets [s, e) is annotated [s, e) * feat_stride / fps.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sola.core.atomic import atomic_write_text, json_text
from sola.core.config import COUNT, SEED, SIZE, SectionedConfig, ranged, require_config_memory
from sola.core.errors import ConfigError, StoreError
from sola.core.memory import require_disk
from sola.data.stores import FeatureStore
from sola.data.stores.npy import NpyWriter

_NUMBERED = re.compile(r"^(.*)_(\d+)$")
FORMAT = "sola-splice-1"


@dataclass
class SpliceConfig:
    """How many videos, which classes are actions, how long the videos are."""

    videos: int = ranged(160, 2, SIZE)
    actions: int = ranged(10, 1, COUNT)  # K classes that are actions; the others are background
    min_clips: int = ranged(16, 1, COUNT)  # clips per video, drawn uniformly in [min_clips, max_clips]
    max_clips: int = ranged(32, 1, COUNT)
    action_fraction: float = ranged(0.5, 0.0, 1.0, above=True)  # chance that a clip slot holds an action clip
    validation_fraction: float = ranged(0.25, 0.0, 1.0, above=True, below=True)  # of the videos, and of each class's clips
    holdout_fraction: float = ranged(0.2, 0.0, 1.0, below=True)  # of the other videos and clips: subset "holdout", for checkpoint selection
    fps: float = ranged(30.0, 0.0, 1000.0, above=True)  # the nominal snippet grid of the annotations
    feat_stride: int = ranged(16, 1, 4096)
    num_frames: int = ranged(16, 1, 4096)
    seed: int = ranged(0, *SEED)

    def validate(self) -> "SpliceConfig":
        """Raise `ConfigError` naming the flag for impossible values."""
        if self.videos < 2:
            raise ConfigError(f"splice: --videos must be at least 2 (training and validation), got {self.videos}")
        if self.actions < 1:
            raise ConfigError(f"splice: --actions must be at least 1, got {self.actions}")
        if not 1 <= self.min_clips <= self.max_clips:
            raise ConfigError(
                f"splice: --clips-per-video A:B needs 1 <= A <= B, got {self.min_clips}:{self.max_clips}"
            )
        if not 0 < self.action_fraction <= 1:
            raise ConfigError(f"splice: action_fraction must be in (0, 1], got {self.action_fraction}")
        if not 0 < self.validation_fraction < 1:
            raise ConfigError(f"splice: validation_fraction must be in (0, 1), got {self.validation_fraction}")
        if not 0 <= self.holdout_fraction < 1:
            raise ConfigError(f"splice: --holdout-fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.holdout_fraction and self.videos < 3:
            raise ConfigError(f"splice: --videos must be at least 3 with a holdout subset, got {self.videos}")
        if not (self.fps > 0 and self.feat_stride > 0 and self.num_frames > 0):
            raise ConfigError("splice: fps, feat_stride and num_frames must be positive")
        return self


def _check_splice(config: "SpliceSections") -> None:
    splice = config.splice.validate()
    # the subsets, orders and per-video draws: a few numbers per video and per clip slot
    require_config_memory(config, 8.0 * splice.videos * (4 + splice.max_clips), ["splice.videos", "splice.max_clips"],
                          "the subsets and the draws of every video")


class SpliceSections(SectionedConfig, check=_check_splice):
    """`SpliceConfig` as a sectioned config (section `splice`): what `sola splice --config/--set` reads."""

    splice: SpliceConfig


def parse_clip_range(text: str) -> tuple[int, int]:
    """`"12:24"` -> (12, 24); `"16"` -> (16, 16). Raises `ConfigError`."""
    first, sep, last = text.partition(":")
    try:
        low = int(first)
        high = int(last) if sep else low
    except ValueError:
        raise ConfigError(f"--clips-per-video takes A:B (two integers), got {text!r}") from None
    return low, high


def clip_class(clip_id: str) -> str:
    """The class of a trimmed clip from its id: `bench_press_7` -> `bench_press` (no suffix: the id itself)."""
    match = _NUMBERED.match(clip_id)
    return match.group(1) if match else clip_id


def split_clips(
    classes: dict[str, list[str]], config: SpliceConfig, rng: np.random.Generator
) -> tuple[list[str], dict[str, dict[str, list[str]]]]:
    """Choose the action classes and split each class's clips into disjoint pools per subset.

    Returns (action class names, sorted; {subset: {class: clip ids}}) with subsets "training",
    "validation" and, when `holdout_fraction` > 0, "holdout". Classes with too few clips to give
    each subset one are left out. Raises `ConfigError` when fewer than `actions` classes (plus one
    for the background) remain.
    """
    needed = 3 if config.holdout_fraction else 2
    usable = sorted(name for name, clips in classes.items() if len(clips) >= needed)
    if len(usable) < config.actions + 1:
        raise ConfigError(
            f"splice: {len(usable)} classes have at least {needed} clips, need --actions ({config.actions}) plus "
            "at least one background class; lower --actions"
        )
    actions = sorted(rng.choice(usable, size=config.actions, replace=False).tolist())
    pools: dict[str, dict[str, list[str]]] = {name: {} for name in subset_names(config)}
    for name in usable:
        clips = rng.permutation(sorted(classes[name])).tolist()
        for subset, fraction in (("validation", config.validation_fraction), ("holdout", config.holdout_fraction)):
            if subset in pools:
                held = min(len(clips) - 1, max(1, int(round(len(clips) * fraction))))
                pools[subset][name], clips = clips[:held], clips[held:]
        pools["training"][name] = clips
    return actions, pools


def subset_names(config: SpliceConfig) -> list[str]:
    """The subsets written: training, validation and (with a holdout fraction) holdout."""
    return ["training", "validation"] + (["holdout"] if config.holdout_fraction else [])


def video_subsets(config: SpliceConfig, rng: np.random.Generator) -> np.ndarray:
    """The subset of each video, shuffled: validation_fraction of them, then holdout_fraction of the rest."""
    num_validation = max(1, int(round(config.videos * config.validation_fraction)))
    rest = config.videos - num_validation
    num_holdout = max(1, int(round(rest * config.holdout_fraction))) if config.holdout_fraction else 0
    if rest - num_holdout < 1:
        raise ConfigError(f"splice: {config.videos} videos leave none for training; raise --videos")
    names = ["validation"] * num_validation + ["holdout"] * num_holdout + ["training"] * (rest - num_holdout)
    return rng.permutation(names)


def draw_video(
    pool: dict[str, list[str]], actions: list[str], config: SpliceConfig, rng: np.random.Generator
) -> list[tuple[str, bool]]:
    """The clips of one video in order: `[(clip id, is_action), ...]`."""
    background = [clip for name, clips in sorted(pool.items()) if name not in actions for clip in clips]
    slots = int(rng.integers(config.min_clips, config.max_clips + 1))
    chosen, previous = [], None
    for _ in range(slots):
        if rng.random() < config.action_fraction:
            allowed = [name for name in actions if name != previous] or actions
            previous = allowed[int(rng.integers(len(allowed)))]
            clips = pool[previous]
            chosen.append((clips[int(rng.integers(len(clips)))], True))
        else:
            previous = None
            chosen.append((background[int(rng.integers(len(background)))], False))
    return chosen


def splice_store(
    clips: FeatureStore, out_dir: str | os.PathLike, config: SpliceConfig | None = None, progress: bool = True
) -> dict:
    """Write `OUT/features/*.npy` and `OUT/annotations.json` spliced from the clips of `clips`.

    Deterministic in `config.seed`: the same clips and config give identical files. Refuses an
    `out_dir` that is not empty (stale videos would stay). Returns a summary dict. Raises
    `ConfigError` for impossible settings, `StoreError` for clips of different dimensions.
    """
    from tqdm.auto import tqdm  # here: the command line reads SpliceConfig's defaults without it

    config = SpliceSections(splice=config or SpliceConfig()).validate().splice
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    classes: dict[str, list[str]] = {}
    for clip_id in clips.video_ids():
        classes.setdefault(clip_class(clip_id), []).append(clip_id)
    rng = np.random.default_rng(config.seed)
    actions, pools = split_clips(classes, config, rng)
    subsets = video_subsets(config, rng)
    reader = _ClipReader(clips)
    _check_disk(clips, config, out_dir)
    writer = NpyWriter(out_dir / "features")
    database, lengths = {}, []
    for index in tqdm(range(config.videos), desc="splice", unit="video", disable=not progress or None):
        video_id, subset = f"splice_{index:04d}", str(subsets[index])
        drawn = draw_video(pools[subset], actions, config, rng)
        parts = [reader.read(clip_id) for clip_id, _ in drawn]
        writer.write(video_id, np.concatenate(parts))
        lengths.append(sum(len(part) for part in parts))
        database[video_id] = _video_entry(subset, drawn, [len(part) for part in parts], actions, config)
    writer.close()
    annotations = {
        "version": FORMAT,
        "config": asdict(config),
        "source": str(clips.path.resolve()),
        "actions": actions,
        "background": sorted(name for name in pools["training"] if name not in actions),
        "subsets": subset_names(config),
        "database": database,
    }
    atomic_write_text(out_dir / "annotations.json", json_text(annotations, indent=1))
    lengths = np.asarray(lengths)
    return {
        "videos": config.videos,
        "validation_videos": int((subsets == "validation").sum()),
        "holdout_videos": int((subsets == "holdout").sum()),
        "segments": sum(len(entry["annotations"]) for entry in database.values()),
        "snippets": int(lengths.sum()),
        "min_length": int(lengths.min()),
        "max_length": int(lengths.max()),
        "actions": actions,
        "dim": reader.dim,
        "features": str(out_dir / "features"),
        "annotations": str(out_dir / "annotations.json"),
    }


def _check_disk(clips: FeatureStore, config: SpliceConfig, out_dir: Path) -> None:
    """Refuse, before writing, videos whose features (about the first clip's size per clip) overfill the disk."""
    first = np.asarray(clips.read(clips.video_ids()[0]))
    size = config.videos * (config.min_clips + config.max_clips) / 2 * first.nbytes
    require_disk(size, out_dir, f"splice.videos={config.videos} of about {(config.min_clips + config.max_clips) // 2} "
                 f"clips of {first.nbytes:,} bytes", "lower --videos or --clips-per-video, or write to another disk")


class _ClipReader:
    """Reads each clip once (clips recur across videos) and checks that all share one dimension."""

    def __init__(self, clips: FeatureStore) -> None:
        self.clips, self.cache, self.dim = clips, {}, None

    def read(self, clip_id: str) -> np.ndarray:
        """The clip's features `(T, C)`; raises `StoreError` for a clip of another dimension."""
        if clip_id not in self.cache:
            self.cache[clip_id] = np.asarray(self.clips.read(clip_id))
        features = self.cache[clip_id]
        if self.dim is None:
            self.dim = features.shape[1]
        elif features.shape[1] != self.dim:
            raise StoreError(f"clip {clip_id!r} in {self.clips.path} has dim {features.shape[1]}, others {self.dim}; "
                             "splice clips of one feature type")
        return features


def _video_entry(subset: str, drawn: list[tuple[str, bool]], lengths: list[int], actions: list[str],
                 config: SpliceConfig) -> dict:
    """The ActivityNet-style annotation of one spliced video: its action clips as segments, in seconds."""
    seconds_per_snippet = config.feat_stride / config.fps
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return {
        "subset": subset,
        "clips": [clip_id for clip_id, _ in drawn],
        "duration": round(int(sum(lengths)) * seconds_per_snippet, 6),
        "fps": config.fps,
        "feat_stride": config.feat_stride,
        "num_frames": config.num_frames,
        "annotations": [
            {
                "label": clip_class(clip_id),
                "label_id": actions.index(clip_class(clip_id)),
                "segment": [round(int(start) * seconds_per_snippet, 6),
                            round(int(start + length) * seconds_per_snippet, 6)],
                "clip": clip_id,
            }
            for (clip_id, is_action), start, length in zip(drawn, starts, lengths)
            if is_action
        ],
    }


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to mix spliced videos with anything already in `out_dir` (stale videos would stay)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"splice: {out_dir} exists and is not a directory; choose another OUT")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise ConfigError(f"splice: {out_dir} is not empty; choose a new OUT or remove it first")
