"""`sola demo`: the whole SoLa workflow in a few minutes on a CPU.

Synthetic (default): synthetic benchmark -> fit SoLa (a short schedule, below) -> select a checkpoint (the
identity is a candidate) -> transform -> TSM pictures -> linear probe, baseline vs SoLa -> the TAL head on both
feature sets -> reports (`sola report` of the comparison and of the fit) -> summary. When selection discards the
adapter as fitted (it keeps the original features or an earlier checkpoint), the pictures, the probe and the head
show that adapter too ("fitted"), so that the demo shows what SoLa did and what selection chose.
Real videos (`videos_dir`): Kinetics-400 I3D extraction -> fit -> transform -> TSM pictures -> the
fit's report.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from sola.adapt.adapter import adapter_digest, load_adapter
from sola.adapt.fit import fit_adapter
from sola.adapt.transform import PROVENANCE, transform_store
from sola.core.atomic import atomic_write_text, json_text
from sola.core.config import SoLaConfig, nest_dotted
from sola.core.errors import ExtractError
from sola.core.runs import ADAPTER, BEST, STATE, metrics_summary
from sola.data.annotations import load_annotations
from sola.data.stores import FeatureStore, open_store
from sola.data.synthetic import SyntheticConfig, write_synthetic
from sola.evaluate.probe import compare_probe, format_probe_table, json_ready
from sola.evaluate.select import select_checkpoint
from sola.evaluate.tsm import write_tsm_picture
from sola.experiments.compare import RESULTS, compare, format_markdown, verdict_lines
from sola.extract import extract_videos, load_metadata
from sola.extract.config import ExtractConfig
from sola.tal.config import load_tal_config
from sola.viz.report import write_report

# The demo's schedule, beyond the reference (150 epochs of one window per video, batch 256, lr 1e-4):
# on 200 videos the reference takes one optimiser step per epoch, 150 in all. The demo keeps the
# reference lr and sets a budget of steps instead (more windows per video, a smaller batch), a short
# one: measured (README, "Does SoLa help?"), 400 steps at lr 1e-4 raised the synthetic probe but cut
# the synthetic head's mAP by 14 points as the departure kept growing, while 100 steps did not hurt
# either benchmark. The former demo schedule (lr 5e-3) destroyed real I3D features (departure 44
# after one epoch). A checkpoint every epoch (about 50 steps) gives selection its candidates.
DEMO_SCHEDULE = {
    "fit.steps": 100,
    "fit.windows_per_video": 16,
    "fit.batch_size": 64,
    "fit.lr": 1e-4,
    "fit.checkpoint_every": 1,
}
KEPT_ORIGINAL = "on this data no checkpoint beat the original features; the original is kept"
WINDOWS_PER_EPOCH = 3200  # a few real videos get more windows each, so an epoch stays ~50 steps


def run_demo(
    out_dir: str | Path = "demo_out",
    num_videos: int | None = None,
    epochs: int | None = None,
    videos_dir: str | Path | None = None,
    annotations: str | Path | None = None,
    fps: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    config: str | Path | None = None,
    overrides: dict | None = None,
) -> dict:
    """Run the demo into `out_dir` (reusing finished stages) and return its summary dict.

    Without `videos_dir`: the synthetic benchmark of `num_videos` videos (default 200). With it:
    I3D features of the videos in `videos_dir` (resampled to `fps` when given), and `annotations`
    (optional, any format `load_annotations` reads) for the ground truth in the pictures. The fit
    uses the demo's schedule (`DEMO_SCHEDULE`), then the SoLa YAML `config`, then the dotted
    `overrides`; `epochs` (or an `fit.epochs` override) replaces the step budget by epochs.
    """
    out_dir = Path(out_dir)
    started = time.perf_counter()
    if epochs:
        overrides = {**(overrides or {}), "fit.epochs": epochs}
    SoLaConfig.load(config, overrides, base=SoLaConfig.from_dict(nest_dotted(DEMO_SCHEDULE)))  # refused before any work
    synthetic = videos_dir is None
    if synthetic:
        store, labels = _synthetic_features(out_dir, num_videos, progress, log)
    else:
        store = _extracted_features(out_dir, Path(videos_dir), fps, progress, log)
        labels = load_annotations(annotations) if annotations else None
    run_dir = out_dir / "run"
    settings = _fit_config(store, config, overrides or {})
    adapter, selection = _fit(store, settings, labels if synthetic else None, run_dir, progress, log)
    kept = selection is not None and bool(selection["identity_wins"])
    fitted = _discarded(run_dir, adapter)

    sola_dir = out_dir / "sola_features"
    _forget_other_adapter(sola_dir, adapter)
    _forget_stale_heads(out_dir, {"sola": adapter, "fitted": fitted})
    if kept:  # the identity: its output would equal the input, so nothing is written (as `sola transform` does)
        shutil.rmtree(sola_dir, ignore_errors=True)
        log("[3/7] the original features were kept: no copy of them is written")
    else:
        log(f"[3/7] transforming every video to {sola_dir}")
    transformed = transform_store(adapter, store, sola_dir, progress=progress, skip_identity=kept)
    fitted_store = None
    if fitted is not None and synthetic:
        fitted_dir = out_dir / "fitted_features"
        _forget_other_adapter(fitted_dir, fitted)
        log(f"      transforming every video with the adapter as fitted (discarded by selection) to {fitted_dir}")
        transform_store(fitted, store, fitted_dir, progress=progress)
        fitted_store = open_store(fitted_dir)
    pictures = _pictures(store, labels, None if kept else adapter, out_dir, synthetic, log, fitted,
                         None if kept or selection is None else selection["best"])
    if synthetic:
        # a kept identity: the SoLa features equal the originals, so the head's sola runs are the baseline's
        record = {"selected": True, "best": selection["best"], "message": selection["message"], "kept_original": kept}
        probe, detection = _evaluate(store, labels, store if kept else open_store(sola_dir), out_dir, progress, log,
                                     fitted, fitted_store, record)
    else:
        probe = detection = None
        log("[5/7] no probe or TAL head on a handful of real videos (they need annotated training and validation splits)")

    reports = _reports([out_dir / "compare"] if synthetic else [], run_dir, log)
    fit_summary = metrics_summary(run_dir)
    summary = {
        "videos": len(store),
        "features": str(store.path),
        "sola_features": str(store.path if transformed["out"] is None else sola_dir),
        "fit": fit_summary,
        "selected": None if selection is None else selection["best"],
        "transform": transformed,
        "pictures": pictures,
        "probe": probe,
        "detection": detection,
        "verdict": None if detection is None else verdict_lines(detection),
        "kept_original": None if selection is None else kept,
        "fitted_shown": fitted is not None and synthetic,
        "reports": reports,
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_text(out_dir / "summary.json", json_text(summary, indent=1))
    log(
        f"demo done in {summary['seconds']:.0f} s: SoLa fitted on {len(store)} videos "
        f"({fit_summary['steps']} steps), loss {fit_summary['first_loss']:.4f} -> {fit_summary['last_loss']:.4f}, "
        f"gate tanh(alpha) = {fit_summary['gate']:+.3f}, departure {fit_summary['departure']:.3f}; "
        f"SoLa features: {summary['sola_features']}; pictures: {', '.join(pictures)}"
    )
    if kept:
        log(f"the original features were kept: {KEPT_ORIGINAL}; the 'fitted' rows and panels show the adapter "
            "that selection discarded")
    log(f"report{'s' if len(reports) > 1 else ''}: {', '.join(reports)}")
    return summary


def _discarded(run_dir: Path, chosen) -> object | None:
    """The run's adapter as fitted (its last) when selection chose another one (an earlier checkpoint or the
    identity), else None."""
    last = load_adapter(run_dir / ADAPTER)
    return None if adapter_digest(last) == adapter_digest(chosen) else last


def _reports(compare_dirs: list[Path], run_dir: Path, log) -> list[str]:
    """Stage 7: the `sola report` pages of the comparison (synthetic demo) and of the fit; their paths."""
    log("[7/7] writing the reports (self-contained HTML pages with a Markdown twin)")
    return [str(write_report(source)["html"]) for source in [*compare_dirs, run_dir]]


def _fit_config(store: FeatureStore, path, overrides: dict) -> SoLaConfig:
    """The demo's schedule (windows per video scaled to the store), then the YAML file, then `overrides`."""
    schedule = dict(DEMO_SCHEDULE)
    schedule["fit.windows_per_video"] = max(16, math.ceil(WINDOWS_PER_EPOCH / len(store)))
    if overrides.get("fit.epochs") and "fit.steps" not in overrides:
        schedule["fit.steps"] = 0  # epochs instead of the step budget
    return SoLaConfig.load(path, overrides, base=SoLaConfig.from_dict(nest_dotted(schedule)))


def _fit(store: FeatureStore, config: SoLaConfig, labels, run_dir: Path, progress: bool, log):
    """Stage 2: fit SoLa (resumable); with `labels`, select a checkpoint.

    Returns `(adapter, selection table or None)`.
    """
    budget = f"{config.fit.steps} steps" if config.fit.steps else f"{config.fit.epochs} epochs"
    log(f"[2/7] fitting SoLa ({budget} at lr {config.fit.lr:g}, {config.fit.windows_per_video} windows/video/epoch) "
        f"in {run_dir}")
    adapter = fit_adapter(store, config, run_dir, resume=(run_dir / STATE).is_file(), progress=progress, log=log)
    if labels is None:
        return adapter, None
    log("      selecting a checkpoint on held-out training videos (the identity is a candidate)")
    selection = select_checkpoint(run_dir, store, labels, subset="training", progress=progress)
    log(f"      {selection['message']}")
    if selection["identity_wins"]:
        log(f"      {KEPT_ORIGINAL}")
    return load_adapter(run_dir / BEST), selection


def _pictures(store: FeatureStore, labels, adapter, out_dir: Path, synthetic: bool, log, fitted=None,
              best: str | None = None) -> list[str]:
    """Stage 4: TSM pictures of a few videos (validation videos of the synthetic benchmark): the original features,
    the selected adapter's (`adapter`; None when the original features were kept) and the discarded `fitted` one's."""
    log(f"[4/7] drawing temporal self-similarity maps in {out_dir}")
    shown = sorted(labels.subset("validation"))[:3] if synthetic else store.video_ids()[:4]
    grid = {} if synthetic else _extraction_grid(store)
    titles = {"SoLa features": f"SoLa, selected ({best})"} if fitted is not None and best else {}
    if fitted is not None and adapter is None:
        titles["original features"] = "original features (kept)"
    more = {"SoLa as fitted (discarded)": fitted} if fitted is not None else None
    return [
        str(write_tsm_picture(store, video_id, out_dir / f"tsm_{video_id}.png", adapter=adapter,
                              annotations=labels, labels=titles, more=more, **grid.get(video_id, {})))
        for video_id in shown
    ]


def _evaluate(store: FeatureStore, labels, sola_store: FeatureStore, out_dir: Path, progress: bool, log,
              fitted=None, fitted_store: FeatureStore | None = None, record: dict | None = None):
    """Stages 5-6: the linear probe and the built-in head, original vs SoLa features (and, with `fitted`, the
    features of the adapter as fitted that selection discarded), same seed."""
    shown = "baseline vs SoLa" + (" vs SoLa as fitted" if fitted is not None else "")
    jobs = _head_jobs()
    made = {}

    def probe_table() -> dict:  # run while the heads train when they train at once (compare's jobs)
        more = {"fitted": fitted} if fitted is not None else None
        kept = sola_store is store
        table = json_ready(compare_probe(store, labels, adapted_store=None if kept else sola_store, seed=0, more=more))
        if kept:  # the original features: the baseline's row (the same snippets, the same features)
            table["rows"] = {"baseline": table["rows"]["baseline"], "SoLa": table["rows"]["baseline"],
                             **{name: row for name, row in table["rows"].items() if name != "baseline"}}
        made["table"] = table
        return table

    log(f"[5/7] linear probe (action vs background snippets), {shown}, same seed"
        + (", while the heads train" if jobs > 1 else ""))
    if jobs <= 1:
        log(format_probe_table(probe_table()))
    log(f"[6/7] the built-in TAL head (configs/tal_synthetic_cpu.yaml), {shown}, same seed")
    modes = ["baseline", "sola"] + (["fitted"] if fitted_store is not None else [])
    detection = compare(store, labels, load_tal_config("tal_synthetic_cpu"), out_dir / "compare",
                        modes=modes, seeds=1, adapted_store=sola_store, probe_table=made.get("table", probe_table),
                        progress=progress, log=log, fitted_store=fitted_store, sola_record=record, jobs=jobs)
    probe = made.get("table") or probe_table()  # all heads resumed: nothing ran meanwhile
    if jobs > 1:
        log(format_probe_table(probe))
    log(format_markdown(detection, with_verdict=False))  # the verdict: once, below
    for line in verdict_lines(detection, average_only=True):  # per tIoU: compare.md
        log(f"verdict: {line}")
    return probe, detection


def _head_jobs() -> int:
    """Heads the demo trains at once: one process per torch thread it may use (`sola.core.threads`), as the small
    synthetic head gains little from a second thread (compare's `jobs`)."""
    import torch

    return torch.get_num_threads()


def _synthetic_features(out_dir: Path, num_videos: int | None, progress: bool, log) -> tuple[FeatureStore, object]:
    """Stage 1 of the synthetic demo: write (or reuse) the benchmark; returns store and annotations."""
    data_dir = out_dir / "data"
    synthetic = SyntheticConfig(videos=num_videos or SyntheticConfig.videos)
    if _synthetic_changed(data_dir, synthetic):
        log(f"[1/7] writing the synthetic benchmark ({synthetic.videos} videos) to {data_dir}")
        _forget_outputs(out_dir)
        write_synthetic(data_dir, synthetic, progress=progress)
    else:
        log(f"[1/7] reusing the synthetic benchmark in {data_dir}")
    return open_store(data_dir / "features"), load_annotations(data_dir / "annotations.json")


def _extracted_features(out_dir: Path, videos_dir: Path, fps: float | None, progress: bool, log) -> FeatureStore:
    """Stage 1 of the real-video demo: I3D features of every video (resumable); returns the store."""
    features = out_dir / "features"
    marker = out_dir / "videos.json"
    source = {"videos": str(videos_dir.resolve()), "fps": fps}
    if marker.is_file() and json.loads(marker.read_text()) != source:
        _forget_outputs(out_dir)
        shutil.rmtree(features, ignore_errors=True)
    atomic_write_text(marker, json_text(source))
    log(f"[1/7] extracting Kinetics-400 I3D features of {videos_dir} to {features}")
    summary = extract_videos(videos_dir, features, ExtractConfig.from_dict({"extract": {"fps": fps}}),
                             progress=progress)
    for path, reason in summary.failed:
        log(f"skipped {path}: {reason}")
    if not (summary.extracted or summary.skipped):
        raise ExtractError(f"{videos_dir}: no video could be read; point --videos at a folder of video files")
    return open_store(features)


def _extraction_grid(store: FeatureStore) -> dict[str, dict]:
    """Per video, the snippet grid `sola extract` used (fps, stride, window), for the pictures."""
    videos = (load_metadata(store.path) or {}).get("videos", {})
    return {
        video_id: {"fps": info["fps"], "feat_stride": info["stride"], "num_frames": info["window"]}
        for video_id, info in videos.items()
    }


def _forget_outputs(out_dir: Path) -> None:
    """Remove the demo's own fit and transform outputs (they belong to other data)."""
    for stale in ("run", "sola_features", "fitted_features", "compare"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)


def _forget_other_adapter(features_dir: Path, adapter) -> None:
    """Remove the demo's SoLa (or fitted) features when another adapter made them (a rerun with other --epochs)."""
    record = features_dir / PROVENANCE
    try:
        made_by = json.loads(record.read_text()).get("adapter")
    except (OSError, ValueError):
        return
    if made_by != adapter_digest(adapter):
        shutil.rmtree(features_dir, ignore_errors=True)


def _forget_stale_heads(out_dir: Path, adapters: dict) -> None:
    """Remove the head results of each mode ("sola", "fitted") whose adapter (None: no such mode) is not the one
    that made them, as recorded in `OUT/heads.json` (a rerun with other --epochs, another selection)."""
    record = out_dir / "heads.json"
    digests = {mode: None if adapter is None else adapter_digest(adapter) for mode, adapter in adapters.items()}
    try:
        previous = json.loads(record.read_text())
    except (OSError, ValueError):
        previous = {}
    for mode, digest in digests.items():
        if previous.get(mode) != digest:
            for stale in (out_dir / "compare" / RESULTS).glob(f"{mode}_seed*"):
                stale.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record, json_text(digests))


def _synthetic_changed(data_dir: Path, config: SyntheticConfig) -> bool:
    try:
        saved = json.loads((data_dir / "annotations.json").read_text()).get("config")
    except (OSError, ValueError):
        return True
    return saved != json.loads(json.dumps(asdict(config)))
