"""`sola demo`: the whole SoLa workflow on the embedded synthetic benchmark, in a few minutes on a CPU.

synthetic features -> fit SoLa (a short schedule, below) -> transform -> TSM pictures
-> linear probe, baseline vs SoLa -> summary.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from sola.annotations import load_annotations
from sola.atomic import atomic_write_text
from sola.config import load_config
from sola.fit import fit_adapter, metrics_summary
from sola.probe import compare_probe, format_probe_table, json_ready
from sola.stores import open_store
from sola.synthetic import SyntheticConfig, write_synthetic
from sola.transform import transform_store
from sola.tsm import write_tsm_picture

# The demo's schedule, beyond the reference (150 epochs at lr 1e-4 with one window per video):
# on 200 videos that is one optimiser step per epoch, and the gate tanh(alpha) moves by about lr
# per step, so a short run at the reference lr barely leaves the identity. More windows per video,
# a smaller batch and a larger lr give hundreds of steps in about a minute on 2 CPU cores.
DEMO_SCHEDULE = {
    "fit.epochs": 8,
    "fit.windows_per_video": 16,
    "fit.batch_size": 64,
    "fit.lr": 5e-3,
    "fit.checkpoint_every": 2,
}


def run_demo(
    out_dir: str | Path = "demo_out",
    videos: int | None = None,
    epochs: int | None = None,
    progress: bool = True,
    log=print,
) -> dict:
    """Run the demo into `out_dir` (reusing finished stages) and return its summary dict."""
    out_dir = Path(out_dir)
    started = time.perf_counter()
    data_dir = out_dir / "data"
    synthetic = SyntheticConfig(videos=videos or SyntheticConfig.videos)
    if not (data_dir / "annotations.json").is_file() or _synthetic_changed(data_dir, synthetic):
        log(f"[1/5] writing the synthetic benchmark ({synthetic.videos} videos) to {data_dir}")
        for stale in ("run", "sola_features"):  # the demo's own outputs of other data
            shutil.rmtree(out_dir / stale, ignore_errors=True)
        write_synthetic(data_dir, synthetic, progress=progress)
    else:
        log(f"[1/5] reusing the synthetic benchmark in {data_dir}")
    store = open_store(data_dir / "features")

    run_dir = out_dir / "run"
    config = load_config(None, {**DEMO_SCHEDULE, "fit.epochs": epochs or DEMO_SCHEDULE["fit.epochs"]})
    resume = (run_dir / "state.safetensors").is_file()
    log(f"[2/5] fitting SoLa ({config.fit.epochs} epochs, {config.fit.windows_per_video} windows/video/epoch) in {run_dir}")
    adapter = fit_adapter(store, config, run_dir, resume=resume, progress=progress, log=log)

    sola_dir = out_dir / "sola_features"
    log(f"[3/5] transforming every video to {sola_dir}")
    transformed = transform_store(adapter, store, sola_dir, progress=progress)
    sola_store = open_store(sola_dir)

    log(f"[4/5] drawing temporal self-similarity maps in {out_dir}")
    annotations = load_annotations(data_dir / "annotations.json")
    validation = sorted(annotations.subset("validation"))
    pictures = [
        str(write_tsm_picture(store, video_id, out_dir / f"tsm_{video_id}.png", adapter=adapter, annotations=annotations))
        for video_id in validation[:3]
    ]

    log("[5/5] linear probe (action vs background snippets), baseline vs SoLa, same seed")
    probe = compare_probe(store, annotations, adapted_store=sola_store, seed=0)
    table = format_probe_table(probe)
    log(table)

    fit_summary = metrics_summary(run_dir)
    summary = {
        "videos": len(store),
        "fit": fit_summary,
        "transform": transformed,
        "pictures": pictures,
        "probe": json_ready(probe),
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=1))
    log(
        f"demo done in {summary['seconds']:.0f} s: SoLa fitted on {len(store)} videos "
        f"({fit_summary['steps']} steps), loss {fit_summary['first_loss']:.4f} -> {fit_summary['last_loss']:.4f}, "
        f"gate tanh(alpha) = {fit_summary['gate']:+.3f}, departure {fit_summary['departure']:.3f}; features in {sola_dir}; pictures: {', '.join(pictures)}"
    )
    return summary


def _synthetic_changed(data_dir: Path, config: SyntheticConfig) -> bool:
    from dataclasses import asdict

    try:
        saved = json.loads((data_dir / "annotations.json").read_text()).get("config")
    except (OSError, ValueError):
        return True
    return saved != json.loads(json.dumps(asdict(config)))
