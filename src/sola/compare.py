"""The paper's main experiment: the same TAL head on original and on SoLa features, side by side.

Modes:
  baseline     the head on the original features
  sola         the head on SoLa features (a fitted adapter, or one fitted here by Similarity Matching)
  unified      a fresh SoLa adapter in front of the head, trained jointly with the TAL loss (the paper's ablation)
  unified+sm   the same plus Similarity Matching as an auxiliary loss (beyond the paper)
Every mode runs with the same seeds; each (mode, seed) result is saved, so an interrupted
comparison resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from sola.atomic import atomic_write_text
from sola.config import SoLaConfig
from sola.errors import ConfigError
from sola.stores import FeatureStore, open_store

MODES = ("baseline", "sola", "unified", "unified+sm")


def parse_modes(text: str) -> list[str]:
    """`"baseline,sola"` -> ["baseline", "sola"]; raises `ConfigError` on unknown or repeated modes."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes or len(set(modes)) != len(modes):
        raise ConfigError(f"--modes takes a comma list of distinct modes among {', '.join(MODES)}; got {text!r}")
    return modes


def sola_features(
    store: FeatureStore,
    out_dir: Path,
    adapter=None,
    sola_config: SoLaConfig | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FeatureStore:
    """The SoLa-transformed copy of `store` in `out_dir/sola_features` (fitting an adapter first if none)."""
    from sola.adapter import load_adapter
    from sola.fit import fit_adapter
    from sola.transform import transform_store

    if adapter is None:
        run_dir = out_dir / "sola_run"
        log(f"fitting a SoLa adapter in {run_dir}")
        config = sola_config or SoLaConfig()
        adapter = fit_adapter(store, config, run_dir, resume=(run_dir / "state.safetensors").is_file(),
                              progress=progress, log=log)
    elif not hasattr(adapter, "residual"):
        adapter = load_adapter(adapter)
    target = out_dir / "sola_features"
    transform_store(adapter, store, target, progress=progress)
    return open_store(target, layout=store.layout, **store.options())


def compare(
    store: FeatureStore,
    annotations,
    tal_config,
    out_dir: str | os.PathLike,
    modes: list[str] = ("baseline", "sola"),
    seeds: int = 3,
    adapter=None,
    sola_config: SoLaConfig | None = None,
    sm_weight: float = 1.0,
    probe: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
    adapted_store: FeatureStore | None = None,
    probe_table: dict | None = None,
) -> dict:
    """Train and evaluate the head per mode and seed; write `compare.json` and `compare.md` in `out_dir`.

    `adapter`: a `SoLaAdapter`, an adapter file or run directory for the "sola" mode; without it one
    is fitted with `sola_config` (Similarity Matching, no labels). `adapted_store`: SoLa features
    already written (then no adapter work here). `probe_table`: a `sola.probe.compare_probe` result
    to reuse for the probe columns. Returns the table as a dict.
    """
    from sola.tal import run_experiment

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stores = {"original": store}
    if "sola" in modes:
        stores["sola"] = adapted_store or sola_features(store, out_dir, adapter, sola_config, progress, log)
    results: dict[str, list[dict]] = {}
    for mode in modes:
        for seed in range(seeds):
            saved = out_dir / "results" / f"{mode}_seed{seed}.json"
            if saved.is_file():
                result = json.loads(saved.read_text())
            else:
                log(f"training the head: {mode}, seed {seed}")
                features = stores["sola"] if mode == "sola" else store
                training = "baseline" if mode in ("baseline", "sola") else mode
                result = run_experiment(features, annotations, tal_config, seed=seed,
                                        progress=None if progress else False,  # None: bars on a terminal only
                                        mode=training, sm_weight=sm_weight, sola_config=sola_config)
                result.pop("history", None)
                atomic_write_text(saved, json.dumps(result))
            results.setdefault(mode, []).append(result)
    probes = _probe_rows(stores, annotations, probe_table) if probe else {}
    table = summarise(results, probes, tal_config, sm_weight)
    atomic_write_text(out_dir / "compare.json", json.dumps(table, indent=1))
    atomic_write_text(out_dir / "compare.md", format_markdown(table))
    return table


def _probe_rows(stores: dict[str, FeatureStore], annotations, table: dict | None = None) -> dict[str, dict]:
    """Linear-probe metrics per feature set (deterministic: one run each), or those of `table`."""
    from sola.probe import compare_probe, json_ready

    if table is None:
        table = json_ready(compare_probe(stores["original"], annotations, adapted_store=stores.get("sola"), seed=0))
    rows = table["rows"]
    return {"baseline": rows["baseline"], **({"sola": rows["SoLa"]} if "SoLa" in rows else {})}


def summarise(results: dict[str, list[dict]], probes: dict[str, dict], tal_config, sm_weight: float) -> dict:
    """Mean and std over seeds of every mAP column, with probe accuracy and seconds per epoch."""
    rows = {}
    for mode, runs in results.items():
        thresholds = list(runs[0]["mAP"])
        per_tiou = np.array([[run["mAP"][t] for t in thresholds] for run in runs])  # (seeds, tIoUs)
        average = np.array([run["average_mAP"] for run in runs])
        probe = probes.get(mode, {})
        rows[mode] = {
            "mAP_mean": dict(zip(thresholds, per_tiou.mean(0).tolist())),
            "mAP_std": dict(zip(thresholds, per_tiou.std(0).tolist())),
            "average_mAP_mean": float(average.mean()),
            "average_mAP_std": float(average.std()),
            "seconds_per_epoch": float(np.mean([run["seconds_per_epoch"] for run in runs])),
            "probe_accuracy": probe.get("sgd_accuracy"),
            "probe_balanced_accuracy": probe.get("lbfgs_balanced_accuracy"),
            "seeds": [run["seed"] for run in runs],
            "scoring": runs[0]["mode"],
        }
    return {"modes": list(results), "rows": rows, "sm_weight": sm_weight,
            "test_subset": tal_config.data.test_subset, "train_subset": tal_config.data.train_subset}


def format_markdown(table: dict) -> str:
    """The comparison as a Markdown table (mAP in %, mean +- std over seeds)."""
    rows = table["rows"]
    thresholds = list(next(iter(rows.values()))["mAP_mean"])
    header = ["mode", *[f"mAP@{t}" for t in thresholds], "avg mAP", "probe acc", "probe bal.acc", "s/epoch"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode, row in rows.items():
        cells = [mode]
        cells += [f"{100 * row['mAP_mean'][t]:.2f} ± {100 * row['mAP_std'][t]:.2f}" for t in thresholds]
        cells.append(f"{100 * row['average_mAP_mean']:.2f} ± {100 * row['average_mAP_std']:.2f}")
        for key in ("probe_accuracy", "probe_balanced_accuracy"):
            cells.append("—" if row[key] is None else f"{100 * row[key]:.2f}")
        cells.append(f"{row['seconds_per_epoch']:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    seeds = len(next(iter(rows.values()))["seeds"])
    lines.append("")
    lines.append(
        f"Head trained on `{table['train_subset']}`, evaluated on `{table['test_subset']}`; mean ± std over "
        f"{seeds} seed(s); scoring: {next(iter(rows.values()))['scoring']}. Probe: reference SGD accuracy and "
        "converged class-balanced logistic regression (action vs background snippets)."
    )
    return "\n".join(lines) + "\n"
