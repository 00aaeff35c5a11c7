"""The paper's ablations in one command (`sola ablate`): a grid of settings, each against the original features.

A grid point is a dict of settings. Keys of the SoLa config sections (adapter, matching, fit, transform)
change the adapter; keys of the TAL sections (data, model, train, test) change the head for both rows;
two keys are special: `mode` (`sola`: fit SoLa, optionally select a checkpoint, then train the head on
its features, the paper's separate training; `unified` / `unified+sm`: an adapter trained jointly with
the head, without / with Similarity Matching as an auxiliary loss; the controls `smooth`: the features
smoothed along time by a fixed kernel of the point's adapter geometry, and `untrained`: an untrained
adapter gated to the departure of the SoLa adapter fitted and selected at that point, see
`sola.experiments.controls`) and `features` (`both`: the store as
it is; `rgb` / `flow`: the first / second half of a two-stream store's channels).

For each point and seed s (the fit's seed and the head's), the SoLa row is measured beside the
original features with the same head settings and seed (that row is shared by every point with the same
features and head settings): the linear probe (reference SGD protocol and the converged one) and the
head's average mAP, mean ± std over seeds and the paired difference to the original with its 95%
interval. A control point is also set against the SoLa point that differs from it only in `mode`, when
the grid has one (paired seeds). Where a point's features at a seed are the original ones (selection
kept the identity, or an adapter of gate 0), its row is the original row of that seed and head settings,
not trained again (`reused_from` in its result; ablate.md lists those points). Every (point, seed) is
saved as it finishes, so an interrupted ablation resumes.

The modules that train (compare, probe, the head) are imported when a point is measured, so that the
command line can list the presets without importing torch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from sola.core.atomic import atomic_path, atomic_write_text, json_text
from sola.core.config import SoLaConfig, yaml_problem
from sola.core.errors import ConfigError
from sola.core.stats import (format_difference, format_mean_std, learned_nothing, mean_std, paired_difference,
                             verdict)
from sola.data.stores import FeatureStore, open_store
from sola.data.stores.npy import NpyWriter
from sola.tal.config import TalConfig

CONTROLS = ("smooth", "untrained")  # sola.experiments.controls
MODES = ("sola", "unified", "unified+sm", *CONTROLS)
FEATURES = ("both", "rgb", "flow")
PRESETS: dict[str, list[dict[str, Any]]] = {
    # the paper's receptive-field ablation: kernel sizes, and one dilated kernel
    "receptive-field": [{"adapter.kernel_size": k} for k in (1, 3, 5, 9)]
    + [{"adapter.kernel_size": 5, "adapter.dilation": 2}],
    # separate training (fit SoLa, then the head) against unified training, without and with SM
    "unified": [{"mode": mode} for mode in MODES],
    # the RGB half of a two-stream store against both streams, each with and without SoLa
    "encoder": [{"features": "rgb"}, {"features": "both"}],
}
COLUMNS = ("average_mAP", "lbfgs_balanced_accuracy", "sgd_balanced_accuracy")
NAMES = {"average_mAP": "head avg mAP", "lbfgs_balanced_accuracy": "probe L-BFGS bal.acc",
         "sgd_balanced_accuracy": "probe SGD bal.acc"}


def parse_grid(specs: list[str]) -> list[dict[str, Any]]:
    """Points of the cartesian product of `KEY=V1,V2,...` specs (values read by `scalar`).

    Raises `ConfigError` for a spec without `=`, an empty value list or a key given twice.
    """
    axes: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ConfigError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. adapter.kernel_size=1,3,5)")
        if key in axes:
            raise ConfigError(f"--grid: key {key!r} is given twice; list all its values in one --grid")
        axes[key] = [scalar(value.strip()) for value in values.split(",")]
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def scalar(text: str) -> Any:
    """`text` as an int, else a float (1e-4 included, which YAML 1.1 reads as a string), else a YAML scalar."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--grid value {text!r} is not valid YAML ({yaml_problem(exc)})") from None


def split_point(point: dict[str, Any]) -> tuple[str, str, dict, dict]:
    """`(mode, features, SoLa overrides, TAL overrides)` of one point; `ConfigError` for an unknown key."""
    mode, features, sola, tal = "sola", "both", {}, {}
    for key, value in point.items():
        section = key.split(".")[0]
        if key == "mode":
            if value not in MODES:
                raise ConfigError(f"mode={value!r}: choose one of {', '.join(MODES)}")
            mode = value
        elif key == "features":
            if value not in FEATURES:
                raise ConfigError(f"features={value!r}: choose one of {', '.join(FEATURES)}")
            features = value
        elif section in SoLaConfig.sections():
            sola[key] = value
        elif section in TalConfig.sections():
            tal[key] = value
        else:
            raise ConfigError(f"grid key {key!r}: not mode, features, nor a key of the SoLa sections "
                              f"({', '.join(SoLaConfig.sections())}) or the TAL sections ({', '.join(TalConfig.sections())})")
    return mode, features, sola, tal


def point_name(point: dict[str, Any]) -> str:
    """`"adapter.kernel_size=3, adapter.dilation=2"` (`"default"` for an empty point)."""
    return ", ".join(f"{key}={value}" for key, value in point.items()) or "default"


def slug(settings: dict[str, Any]) -> str:
    """A directory name for a dict of settings: readable and unique."""
    text = json.dumps(settings, sort_keys=True)
    readable = re.sub(r"[^A-Za-z0-9.+-]+", "_", point_name(settings))[:60].strip("_") or "default"
    return f"{readable}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def stream_store(store: FeatureStore, which: str, out_dir: Path) -> FeatureStore:
    """`store` itself for "both"; else its RGB (first) or flow (second) channel half, written once as an
    npy store in `out_dir/features_<which>` (rewritten if an earlier write was interrupted)."""
    if which == "both":
        return store
    dim = store.dim()
    if dim % 2:
        raise ConfigError(f"features={which}: {store.path} has {dim} channels, not a two-stream (RGB + flow) store "
                          "of an even width")
    target = out_dir / f"features_{which}"
    done = out_dir / f"features_{which}.done"
    if not done.is_file():
        if target.exists():
            for stale in target.iterdir():
                stale.unlink()
        half = slice(0, dim // 2) if which == "rgb" else slice(dim // 2, dim)
        writer = NpyWriter(target)
        for video_id in store.video_ids():
            writer.write(video_id, np.ascontiguousarray(store.read(video_id)[:, half]))
        writer.close()
        atomic_write_text(done, json_text({"source": str(store.path), "half": which}))
    return open_store(target)


def probe_row(store: FeatureStore, annotations) -> dict:
    """Both probes of one feature set (default probe config, seed 0: deterministic)."""
    from sola.evaluate.probe import collect_snippets, probe_features

    return probe_features(collect_snippets(store, annotations), None, seed=0)


def measure(store: FeatureStore, annotations, tal_config: TalConfig, seed: int, mode: str = "baseline",
            sola_config: SoLaConfig | None = None, sm_weight: float = 1.0, probe: bool = True) -> dict:
    """Probe (when asked) and head of one feature set and seed: a flat dict of the columns."""
    from sola.tal.experiment import run_experiment

    row = probe_row(store, annotations) if probe else {}
    result = run_experiment(store, annotations, tal_config, seed=seed, progress=False, mode=mode,
                            sm_weight=sm_weight, sola_config=sola_config)
    row.update(average_mAP=result["average_mAP"], mAP=result["mAP"], seconds_per_epoch=result["seconds_per_epoch"],
               coverage=result.get("coverage"))
    return row


def cached(path: Path, compute: Callable[[], dict]) -> dict:
    """The JSON saved at `path`, or `compute()` saved there atomically."""
    from sola.evaluate.probe import json_ready

    if path.is_file():
        return json.loads(path.read_text())
    value = json_ready(compute())
    atomic_write_text(path, json_text(value))
    return value


def ablate(store: FeatureStore, annotations, tal_config: TalConfig, points: list[dict[str, Any]],
           out_dir: str | os.PathLike, seeds: int = 3, sola_config: SoLaConfig | None = None, select: bool = True,
           heldout_subset: str | None = None, sm_weight: float = 1.0, progress: bool = False,
           log: Callable[[str], None] = print, selection: dict | None = None, smooth: dict | None = None) -> dict:
    """Run every (point, seed) not yet saved under `out_dir`; write `ablate.json`, `ablate.md` and one
    plot per swept key. Returns the table (see `summarise`). Raises `ConfigError` for a bad point.

    `selection`: overrides of the selection config's `select` section (`sola.experiments.compare.sola_store`),
    e.g. `{"criterion": "head"}`; results under other selection settings are kept apart. `smooth`: `SmoothConfig`
    fields of the smooth control over each point's adapter geometry (e.g. `{"kernel": "gaussian"}`)."""
    from sola.evaluate.probe import json_ready

    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if not points:
        raise ConfigError("nothing to ablate: give --grid KEY=V1,V2 or --preset")
    out_dir = Path(out_dir)
    base = sola_config or SoLaConfig()
    plans = []
    for point in points:  # every point checked before any work
        mode, features, sola_keys, tal_keys = split_point(point)
        sola = SoLaConfig.load(None, sola_keys, base=base)
        tal = TalConfig.load(None, tal_keys, base=tal_config)
        if mode == "smooth":
            from sola.adapt.controls import SmoothConfig

            SmoothConfig.like(sola.adapter, **(smooth or {}))
        plans.append((point, mode, features, sola, tal, tal_keys))
    cells = []
    said = False
    for point, mode, features, sola, tal, tal_keys in plans:
        data = stream_store(store, features, out_dir)
        for seed in range(seeds):
            original_dir = out_dir / "original" / slug({"features": features, **tal_keys})
            original_dir.mkdir(parents=True, exist_ok=True)
            original_path = original_dir / f"seed{seed}.json"
            original = cached(original_path, lambda: measure(data, annotations, tal, seed))
            # the row a cell whose features are `data` itself takes instead of training the same head again
            reuse = {**original, "reused_from": original_path.relative_to(out_dir).as_posix()}
            where = out_dir / "points" / slug(point) / (f"seed{seed}" + _selection_tag(selection))
            where.mkdir(parents=True, exist_ok=True)
            log(f"{point_name(point)}, seed {seed}")
            adapted = cached(where / "result.json", lambda: _adapted(
                data, annotations, tal, mode, sola, seed, where, select, heldout_subset, sm_weight, progress, log,
                selection, smooth, reuse))
            if adapted.get("reused_from") and not said:
                said = True
                log(f"{point_name(point)}, seed {seed}: the features are the original ones (selection kept the "
                    "identity, or a gate of 0): its head is the original row's (same features, seed and head "
                    "settings), not trained again; likewise wherever that holds (ablate.md lists them)")
            cells.append({"point": point, "seed": seed, "original": original, "adapted": adapted})
    table = summarise(points, cells)
    atomic_write_text(out_dir / "ablate.json", json_text(json_ready(table), indent=1))
    atomic_write_text(out_dir / "ablate.md", format_markdown(table))
    table["plots"] = [str(path) for path in plot_table(table, out_dir)]
    return table


def _selection_tag(selection: dict | None) -> str:
    """"" for the default selection (the probe), else a suffix that keeps those results apart."""
    if not selection or selection == {"criterion": "probe"}:
        return ""
    return "_select-" + slug(selection)


def _adapted(data, annotations, tal, mode, sola, seed, where, select, heldout_subset, sm_weight, progress, log,
             selection=None, smooth=None, reuse=None):
    """The SoLa row of one (point, seed): fit (+ select) then the head, unified training, or a control.

    `reuse`: the original row of the same features, head settings and seed (with its `reused_from`), taken as
    the row when the SoLa or control features are `data` itself (selection kept the identity, an adapter of
    gate 0): the same head on the same features and seed would be trained again to the same numbers."""
    from sola.experiments.compare import sola_store
    from sola.experiments.controls import adapter_shape, control_store

    sola = SoLaConfig.load(None, {"fit.seed": seed}, base=sola)
    if mode in ("unified", "unified+sm"):
        return measure(data, annotations, tal, seed, mode=mode, sola_config=sola, sm_weight=sm_weight, probe=False)
    features = record = None
    if mode in ("sola", "untrained"):
        features, record = sola_store(data, where, annotations, tal, sola_config=sola, select=select,
                                      progress=progress, log=log, heldout_subset=heldout_subset, selection=selection)
    if mode in CONTROLS:
        features, control = control_store(mode, data, where, adapter_shape(None, sola), features, smooth, seed,
                                          progress, log)
        row = _head_row(features, data, annotations, tal, seed, reuse)
        row.update(control=control, **({"selected": record["best"]} if record else {}))
        return row
    row = _head_row(features, data, annotations, tal, seed, reuse)
    row.update(selected=record["best"], identity=features is data)
    return row


def _head_row(features: FeatureStore, data: FeatureStore, annotations, tal, seed: int, reuse: dict | None) -> dict:
    """Probe and head of `features` (`measure`), or `reuse` (a copy) when `features` is `data` itself: the
    original features, whose row of the same head settings and seed is `reuse`."""
    if features is data and reuse is not None:
        return dict(reuse)
    return measure(features, annotations, tal, seed)


def summarise(points: list[dict[str, Any]], cells: list[dict]) -> dict:
    """Per point: mean ± std of every column for the original and the adapted features, and the paired
    difference adapted - original (same seeds) with its 95% interval (columns a mode lacks are left out)."""
    rows = []
    for point in points:
        mine = [c for c in cells if c["point"] == point]
        row = {"point": point, "name": point_name(point), "seeds": [c["seed"] for c in mine], "columns": {}}
        for column in COLUMNS:
            adapted = [c["adapted"].get(column) for c in mine]
            original = [c["original"].get(column) for c in mine]
            if any(v is None for v in adapted + original):
                continue
            row["columns"][column] = {"original": mean_std(original), "adapted": mean_std(adapted),
                                      "difference": paired_difference(adapted, original)}
        row["identity_selected"] = sum(bool(c["adapted"].get("identity")) for c in mine)
        row["reused"] = sum(bool(c["adapted"].get("reused_from")) for c in mine)
        head = row["columns"].get("average_mAP")
        row["learned_nothing"] = head and learned_nothing({"original": head["original"]["mean"],
                                                           "SoLa": head["adapted"]["mean"]})
        rows.append(row)
    for row in rows:
        _versus_sola(row, rows, cells)
    coverage = next((c["original"].get("coverage") for c in cells if c["original"].get("coverage")), None)
    return {"rows": rows, "columns": list(COLUMNS), "coverage": coverage}


def sola_point(point: dict[str, Any]) -> dict[str, Any]:
    """The SoLa point a control point is set against: the same settings with mode sola (the default)."""
    return {key: value for key, value in point.items() if key != "mode"}


def _versus_sola(row: dict, rows: list[dict], cells: list[dict]) -> None:
    """For a control point: the paired difference to its SoLa point (`sola_point`) per column, in
    `row["versus_sola"]`, with the verdict on the head's avg mAP (no verdict where both learned nothing)."""
    if row["point"].get("mode") not in CONTROLS:
        return
    target = sola_point(row["point"])
    sola = next((r for r in rows if sola_point(r["point"]) == target and r["point"].get("mode", "sola") == "sola"),
                None)
    if sola is None:
        return
    mine = {c["seed"]: c["adapted"] for c in cells if c["point"] == row["point"]}
    theirs = {c["seed"]: c["adapted"] for c in cells if c["point"] == sola["point"]}
    seeds = [seed for seed in row["seeds"] if seed in theirs]
    found = {}
    for column in COLUMNS:
        values = [mine[s].get(column) for s in seeds]
        others = [theirs[s].get(column) for s in seeds]
        if seeds and not any(v is None for v in values + others):
            found[column] = paired_difference(values, others)
    row["versus_sola"] = {"point": sola["name"], "columns": found}
    head = found.get("average_mAP")
    if head:
        nothing = learned_nothing({"SoLa": float(np.mean([theirs[s]["average_mAP"] for s in seeds])),
                                   row["point"]["mode"]: float(np.mean([mine[s]["average_mAP"] for s in seeds]))})
        row["versus_sola"]["verdict"] = (f"{nothing}: no verdict" if nothing else
                                         verdict(head, row["point"]["mode"], words=("beats SoLa", "trails SoLa")))


def format_markdown(table: dict) -> str:
    """The ablation as a Markdown table (%, mean ± std over seeds; paired difference [95% CI])."""
    header = ["point"]
    for column in COLUMNS:
        header += [f"{NAMES[column]} original", "SoLa", "SoLa - original [95% CI]"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table["rows"]:
        cells = [row["name"]]
        for column in COLUMNS:
            entry = row["columns"].get(column)
            cells += (["—"] * 3 if entry is None else [format_mean_std(entry["original"]),
                                                       format_mean_std(entry["adapted"]),
                                                       format_difference(entry["difference"])])
        lines.append("| " + " | ".join(cells) + " |")
    seeds = max((len(row["seeds"]) for row in table["rows"]), default=0)
    identity = [f"{row['name']}: {row['identity_selected']}" for row in table["rows"] if row["identity_selected"]]
    reused = [f"{row['name']} ({row['reused']} of {len(row['seeds'])} seeds)"
              for row in table["rows"] if row.get("reused")]
    lines += ["", f"{seeds} seed(s) per point (the fit's and the head's); the original row of a point has the same "
              "features, head settings and seeds. Unified modes have no probe columns."
              + (f" Selection kept the identity in: {'; '.join(identity)}." if identity else "")
              + (" The features were the original ones, so the SoLa column is the original's head (same features, "
                 f"seed and head settings; not trained again) at: {'; '.join(reused)}." if reused else "")
              + (f" Head mAP is {table['coverage']['line']}." if table.get("coverage") else "")]
    nothing = [row["name"] for row in table["rows"] if row.get("learned_nothing")]
    if nothing:
        lines += ["", f"No verdict on the head at {', '.join(nothing)}: the head learned nothing there (avg mAP below "
                  "1 point with both features); train longer (train.epochs) or check the config."]
    versus = [row for row in table["rows"] if row.get("versus_sola")]
    if versus:
        lines += ["", "Controls against SoLa (paired seeds, control - SoLa [95% CI]):", ""]
        for row in versus:
            against = row["versus_sola"]
            shown = "; ".join(f"{NAMES[column]} {format_difference(difference)}"
                              for column, difference in against["columns"].items())
            lines.append(f"- {row['name']} vs {against['point']}: {shown}"
                         + (f"; head: {against['verdict']}" if against.get("verdict") else ""))
    return "\n".join(lines) + "\n"


def plot_table(table: dict, out_dir: Path) -> list[Path]:
    """One PNG per swept key: head avg mAP (mean ± std) of SoLa and of the original against the key's values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(key for row in table["rows"] for key in row["point"]))
    paths = []
    for key in keys:
        rows = [row for row in table["rows"] if key in row["point"] and "average_mAP" in row["columns"]]
        if not rows:
            continue
        labels = [", ".join(str(v) if k == key else f"{k.rsplit('.', 1)[-1]}={v}" for k, v in row["point"].items())
                  for row in rows]
        positions = np.arange(len(rows))
        figure, axis = plt.subplots(figsize=(max(4.0, 1.2 * len(rows)), 3.2))
        for offset, which, colour in ((-0.1, "original", "tab:grey"), (0.1, "adapted", "tab:blue")):
            stats = [row["columns"]["average_mAP"][which] for row in rows]
            axis.errorbar(positions + offset, [100 * s["mean"] for s in stats],
                          yerr=[0.0 if np.isnan(s["std"]) else 100 * s["std"] for s in stats], fmt="o",
                          capsize=3, color=colour, label="SoLa" if which == "adapted" else "original")
        axis.set_xticks(positions, labels, fontsize=8)
        axis.set_xlabel(key)
        axis.set_ylabel("head avg mAP (%)")
        axis.legend(fontsize=8)
        figure.tight_layout()
        path = out_dir / f"ablate_{re.sub(r'[^A-Za-z0-9.+-]+', '_', key)}.png"
        with atomic_path(path) as partial:
            figure.savefig(partial, format="png", dpi=120)
        plt.close(figure)
        paths.append(path)
    return paths
