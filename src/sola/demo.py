"""`sola demo`: the whole SoLa workflow on the embedded synthetic benchmark, in a few minutes on a CPU.

synthetic features -> fit SoLa (a short schedule, below) -> transform -> TSM pictures -> summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from sola.config import load_config
from sola.fit import fit_adapter, metrics_summary
from sola.matching import target_map
from sola.plots import cosine_similarity_map, tsm_figure
from sola.stores import open_store
from sola.synthetic import SyntheticConfig, write_synthetic
from sola.transform import transform_store

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
        log(f"[1/4] writing the synthetic benchmark ({synthetic.videos} videos) to {data_dir}")
        write_synthetic(data_dir, synthetic, progress=progress)
    else:
        log(f"[1/4] reusing the synthetic benchmark in {data_dir}")
    store = open_store(data_dir / "features")

    run_dir = out_dir / "run"
    config = load_config(None, {**DEMO_SCHEDULE, "fit.epochs": epochs or DEMO_SCHEDULE["fit.epochs"]})
    resume = (run_dir / "state.safetensors").is_file()
    log(f"[2/4] fitting SoLa ({config.fit.epochs} epochs, {config.fit.windows_per_video} windows/video/epoch) in {run_dir}")
    adapter = fit_adapter(store, config, run_dir, resume=resume, progress=progress, log=log)

    sola_dir = out_dir / "sola_features"
    log(f"[3/4] transforming every video to {sola_dir}")
    transformed = transform_store(adapter, store, sola_dir, progress=progress)
    sola_store = open_store(sola_dir)

    log(f"[4/4] drawing temporal self-similarity maps in {out_dir}")
    annotations = json.loads((data_dir / "annotations.json").read_text())["database"]
    validation = sorted(v for v, a in annotations.items() if a["subset"] == "validation")
    target = target_map(config.matching.num_positions, config.matching.target_k).numpy()
    pictures = []
    for video_id in validation[:3]:
        entry = annotations[video_id]
        per_snippet = entry["feat_stride"] / entry["fps"]
        segments = [(a["segment"][0] / per_snippet, a["segment"][1] / per_snippet) for a in entry["annotations"]]
        maps = {
            "original features": cosine_similarity_map(store.read(video_id)),
            "SoLa features": cosine_similarity_map(sola_store.read(video_id)),
        }
        path = tsm_figure(maps, out_dir / f"tsm_{video_id}.png", segments, target, title=f"{video_id} (validation)")
        pictures.append(str(path))

    fit_summary = metrics_summary(run_dir)
    summary = {
        "videos": len(store),
        "fit": fit_summary,
        "transform": transformed,
        "pictures": pictures,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    log(
        f"demo done in {summary['seconds']:.0f} s: SoLa fitted on {len(store)} videos "
        f"({fit_summary['steps']} steps), loss {fit_summary['first_loss']:.4f} -> {fit_summary['last_loss']:.4f}, "
        f"gate tanh(alpha) = {fit_summary['gate']:+.3f}; features in {sola_dir}; pictures: {', '.join(pictures)}"
    )
    return summary


def _synthetic_changed(data_dir: Path, config: SyntheticConfig) -> bool:
    from dataclasses import asdict

    try:
        saved = json.loads((data_dir / "annotations.json").read_text()).get("config")
    except (OSError, ValueError):
        return True
    return saved != json.loads(json.dumps(asdict(config)))
