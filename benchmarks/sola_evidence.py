"""Does SoLa help? Original vs SoLa features on the real-feature and the synthetic benchmark.

For every data seed (a `sola splice` of the real I3D gym clips, or a `sola synth` benchmark) and
every fit seed: fit SoLa with one schedule, select a checkpoint on held-out training videos (the
identity included; on spliced data the clip-disjoint "holdout" subset) by the probe ("selected",
the reference's rule) and, with `--criteria probe,head`, by a short proxy of the head over paired
seeds ("head-selected", `sola.evaluate.select_head`), then measure on the evaluation subset, original vs
SoLa with the same seeds: the linear probe (reference SGD protocol and converged L-BFGS) and the
built-in head's mAP. With `--fitted`, the last adapter ("as fitted", no selection) is measured
too. With `--controls smooth,untrained` (is SoLa more than smoothing?), two control feature sets are
measured beside them (`sola.adapt.controls`): "smooth", the original features convolved along time by a
fixed box kernel of the adapter's receptive field, and "untrained", the fit's initial adapter (seed = the
fit seed) gated so that its departure equals the fitted (last) adapter's on the same features; each is
also set against every SoLa set measured (paired differences control - SoLa). Every cell is saved as it
finishes, so an interrupted run resumes (and a run into an existing OUT measures only what is missing).
Prints, and writes OUT/evidence.md and OUT/evidence.json: mean ± std over all (data seed, fit seed)
pairs and the paired difference SoLa - original with its 95% t-interval.

    python benchmarks/sola_evidence.py --out bench_out/evidence --fitted    # both benchmarks, 3 x 3
    python benchmarks/sola_evidence.py --criteria probe,head --out bench_out/evidence_head
    python benchmarks/sola_evidence.py --fitted --criteria head --controls smooth,untrained --out bench_out/controls
    python benchmarks/sola_evidence.py --bench splice --data-seeds 1 --fit-seeds 1 --out /tmp/quick
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from sola.adapt.adapter import adapter_digest
from sola.adapt.controls import SmoothConfig, TemporalSmoother, adapter_departure, untrained_adapter
from sola.adapt.fit import fit_adapter
from sola.adapt.health import FitDiverged
from sola.adapt.transform import transform_store
from sola.core.atomic import atomic_write_text
from sola.core.config import load_config
from sola.core.stats import format_difference, format_mean_std, mean_std, paired_difference
from sola.data.annotations import load_annotations
from sola.data.splice import SpliceConfig, splice_store
from sola.data.stores import open_store
from sola.data.synthetic import SyntheticConfig, write_synthetic
from sola.evaluate.probe import ProbeConfig, collect_snippets, json_ready, probe_features
from sola.evaluate.select import select_checkpoint
from sola.evaluate.select_head import head_select_checkpoint
from sola.experiments.demo import DEMO_SCHEDULE
from sola.tal import run_experiment
from sola.tal.config import load_tal_config

CLIPS = Path(__file__).resolve().parents[2] / "shared" / "data" / "features" / "gym_clips"
HEAD_CONFIG = {"splice": "tal_splice_cpu", "synthetic": "tal_synthetic_cpu"}
PROBE_COLUMNS = ("sgd_balanced_accuracy", "lbfgs_balanced_accuracy", "lbfgs_average_precision",
                 "lbfgs_boundary_accuracy")
COLUMNS = (*PROBE_COLUMNS, "average_mAP")
FEATURE_SETS = ("original", "fitted", "selected", "head_selected", "smooth", "untrained")  # measured sets of a cell
SOLA_SETS = ("fitted", "selected", "head_selected")
CONTROLS = ("smooth", "untrained")
TITLES = {"fitted": "SoLa as fitted", "selected": "SoLa selected by probe", "head_selected": "SoLa selected by head",
          "smooth": "smooth (control)", "untrained": "untrained (control)"}
SHORT = {"fitted": "as fitted", "selected": "probe-selected", "head_selected": "head-selected"}


def make_data(bench: str, seed: int, root: Path, clips: Path = CLIPS):
    """The benchmark's store and annotations for one data seed (written once)."""
    data = root / f"data{seed}"
    if not (data / "annotations.json").is_file():
        if bench == "splice":
            splice_store(open_store(clips), data, SpliceConfig(seed=seed), progress=False)
        else:
            write_synthetic(data, SyntheticConfig(seed=seed), progress=False)
    return open_store(data / "features"), load_annotations(data / "annotations.json")


def cached(path: Path, compute):
    """The JSON at `path`, or `compute()` saved there."""
    if path.is_file():
        return json.loads(path.read_text())
    value = json_ready(compute())
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(value))
    return value


def head(store, annotations, tal_config, seed: int) -> dict:
    result = run_experiment(store, annotations, tal_config, seed=seed, progress=False)
    return {"average_mAP": result["average_mAP"], "mAP": result["mAP"]}


def measure(store, annotations, probe_data, adapter, tal_config, seed: int, out: Path) -> dict:
    """Probe + head of one feature set (`adapter` None: the original features)."""
    row = probe_features(probe_data, adapter, seed)
    if adapter is None:
        features = store
    else:
        transform_store(adapter, store, out / "features", progress=False)
        features = open_store(out / "features")
    row.update(head(features, annotations, tal_config, seed))
    return row


def run_cell(bench: str, data_seed: int, fit_seed: int, schedule: dict, root: Path, log, clips: Path = CLIPS,
             criteria: tuple[str, ...] = ("probe",), fitted: bool = True, controls: tuple[str, ...] = ()) -> dict:
    """Original, SoLa selected (by probe and/or by head, as `criteria` says), with `fitted` SoLa as fitted,
    and the `controls` ("smooth", "untrained"), for one (data seed, fit seed)."""
    from sola.adapt.adapter import load_adapter

    store, annotations = make_data(bench, data_seed, root, clips)
    tal_config = load_tal_config(HEAD_CONFIG[bench])
    cell = root / f"data{data_seed}" / f"fit{fit_seed}"
    probe_data = collect_snippets(store, annotations)
    original = cached(cell / "original.json",
                      lambda: measure(store, annotations, probe_data, None, tal_config, fit_seed, cell / "original"))
    run_dir = cell / "run"
    fit_once(store, schedule, fit_seed, run_dir)
    stopped = json.loads((run_dir / "done").read_text())["stopped"]
    # Spliced training videos share clips, so selection measures on the clip-disjoint "holdout" subset.
    heldout = "holdout" if bench == "splice" else None
    last = load_adapter(run_dir / "adapter.safetensors")
    # One head per distinct adapter: `digests.json` maps an adapter's digest to the file of its measurement.
    digests = cached(cell / "digests.json", lambda: {"identity": "original"})

    def measured_as(adapter, name: str) -> dict:
        key = "identity" if adapter is None else adapter_digest(adapter)
        if key not in digests:
            cached(cell / f"{name}.json", lambda: measure(
                store, annotations, probe_data, adapter, tal_config, fit_seed, cell / name))
            digests[key] = name
            atomic_write_text(cell / "digests.json", json.dumps(digests))
        return dict(json.loads((cell / f"{digests[key]}.json").read_text()))

    row = {"data_seed": data_seed, "fit_seed": fit_seed, "original": original, "stopped": stopped}
    if fitted:
        row["fitted"] = measured_as(last, "fitted")
    if "probe" in criteria:
        selection = cached(cell / "select.json", lambda: select_checkpoint(
            run_dir, store, annotations, seed=fit_seed, subset=tal_config.data.train_subset, heldout_subset=heldout))
        best = None if selection["identity_wins"] else load_adapter(selection["best_checkpoint"])
        row.update(selected=measured_as(best, "selected"), best=selection["best"])
    if "head" in criteria:
        # The held-out split (synthetic) is seeded 0 for every fit seed, so the identity's proxy
        # scores of a data seed are shared by its fits (cache_dir).
        by_head = cached(cell / "select_head.json", lambda: head_select_checkpoint(
            run_dir, store, annotations, tal_config, ProbeConfig.from_dict({"select": {"criterion": "head"}}),
            subset=tal_config.data.train_subset, heldout_subset=heldout, cache_dir=cell.parent / "proxy_scores",
            log=lambda m: log(f"  {bench} data {data_seed} fit {fit_seed}: {m}")))
        best = None if by_head["identity_wins"] else load_adapter(by_head["best_checkpoint"])
        row.update(head_selected=measured_as(best, "head_selected"), head_best=by_head["best"],
                   head_seconds_per_seed=by_head["seconds_per_seed"],
                   head_candidates=len(by_head["rows"]) - 1)
    for name, module, record in control_modules(controls, store, schedule, last, fit_seed, cell):
        row[name] = measured_as(module, name)
        row[f"{name}_record"] = record
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    shown = ", ".join(f"{name} {100 * row[name]['average_mAP']:.1f}" for name in FEATURE_SETS if name in row)
    log(f"{bench} data {data_seed} fit {fit_seed}: mAP {shown}"
        + (f"; probe chose {row['best']}" if "best" in row else "")
        + (f", head chose {row['head_best']}" if "head_best" in row else "") + ("; fit stopped" if stopped else ""))
    row.update(final_loss=metrics[-1]["loss"], final_departure=metrics[-1]["health"].get("departure"),
               constant_map_epochs=sum(bool(m.get("constant_map")) for m in metrics), epochs=len(metrics))
    return row


def control_modules(controls: tuple[str, ...], store, schedule: dict, fitted, fit_seed: int, cell: Path):
    """(name, module or None for the identity, record) of each control of one cell: the smoothing of the
    schedule's adapter geometry; the untrained adapter gated to the departure of `fitted` (the last adapter)."""
    geometry = load_config(None, schedule).adapter
    for name in controls:
        if name == "smooth":
            config = SmoothConfig.like(geometry)
            yield name, TemporalSmoother(store.dim(), config), {"kernel": config.kernel,
                                                                "kernel_size": config.kernel_size,
                                                                "dilation": config.dilation}
        elif name == "untrained":
            saved = cell / "untrained_record.json"  # the fitted adapter's departure, measured once per cell
            departure = json.loads(saved.read_text())["departure"] if saved.is_file() else adapter_departure(fitted, store)
            adapter, record = untrained_adapter(store, departure, fitted.shape, fit_seed)
            if not saved.is_file():
                atomic_write_text(saved, json.dumps(record))
            yield name, None if adapter.gate == 0 else adapter, record


def fit_once(store, schedule: dict, fit_seed: int, run_dir: Path) -> None:
    """Fit SoLa into `run_dir` unless done (resumable); `run_dir/done` records a guardrail stop."""
    if (run_dir / "done").is_file():
        return
    config = load_config(None, {**schedule, "fit.seed": fit_seed})
    started = time.perf_counter()
    stopped = None
    try:
        fit_adapter(store, config, run_dir, resume=(run_dir / "state.safetensors").is_file(),
                    progress=False, log=lambda m: None)
    except FitDiverged as exc:
        stopped = str(exc)
    atomic_write_text(run_dir / "done", json.dumps({"stopped": stopped, "seconds": time.perf_counter() - started}))


def checkpoint_rows(bench: str, cell: dict, epochs: list[int], root: Path) -> dict[int, dict]:
    """Probe + head of the adapters a shorter budget gives: with a constant lr the checkpoint of epoch
    e is exactly the adapter of a run of e epochs' steps (same seeds, same windows)."""
    from sola.adapt.adapter import load_adapter

    store, annotations = make_data(bench, cell["data_seed"], root)
    tal_config = load_tal_config(HEAD_CONFIG[bench])
    where = root / f"data{cell['data_seed']}" / f"fit{cell['fit_seed']}"
    probe_data = collect_snippets(store, annotations)
    rows = {}
    for epoch in epochs:
        path = where / "run" / "checkpoints" / f"epoch_{epoch:04d}.safetensors"
        adapter = load_adapter(path)
        rows[epoch] = cached(where / f"epoch_{epoch:04d}.json", lambda: measure(
            store, annotations, probe_data, adapter, tal_config, cell["fit_seed"], where / f"epoch_{epoch:04d}"))
    return rows


def format_budget_table(bench: str, cells: list[dict], by_epoch: dict[int, list[dict]], steps_per_epoch: int) -> str:
    lines = [f"### {bench}: head avg mAP and probe by budget ({len(cells)} pairs, constant lr 1e-4)", "",
             "| budget | steps | head avg mAP | - original [95% CI] | probe L-BFGS bal.acc | - original [95% CI] |",
             "|---|---|---|---|---|---|"]
    original = {c: [cell["original"][c] for cell in cells] for c in ("average_mAP", "lbfgs_balanced_accuracy")}
    lines.append(f"| original | 0 | {format_mean_std(mean_std(original['average_mAP']))} | | "
                 f"{format_mean_std(mean_std(original['lbfgs_balanced_accuracy']))} | |")
    for epoch, rows in sorted(by_epoch.items()):
        cols = []
        for column in ("average_mAP", "lbfgs_balanced_accuracy"):
            values = [row[column] for row in rows]
            cols += [format_mean_std(mean_std(values)), format_difference(paired_difference(values, original[column]))]
        lines.append(f"| epoch {epoch} | {epoch * steps_per_epoch} | {' | '.join(cols)} |")
    return "\n".join(lines) + "\n"


def summarise(cells: list[dict]) -> dict:
    """Per column: mean ± std of each feature set and the paired differences to the original; for each
    control, the paired difference to each SoLa set (`{control}_minus_{sola}`)."""
    names = [name for name in FEATURE_SETS[1:] if all(name in c for c in cells)]
    table = {}
    for column in COLUMNS:
        original = [c["original"][column] for c in cells]
        entry = {"original": mean_std(original)}
        for name in names:
            values = [c[name][column] for c in cells]
            entry[name] = mean_std(values)
            entry[f"{name}_minus_original"] = paired_difference(values, original)
        for control in (n for n in names if n in CONTROLS):
            for sola in (n for n in names if n in SOLA_SETS):
                entry[f"{control}_minus_{sola}"] = paired_difference([c[control][column] for c in cells],
                                                                     [c[sola][column] for c in cells])
        table[column] = entry
    return table


def format_table(bench: str, schedule: dict, cells: list[dict], table: dict) -> str:
    names = {"sgd_balanced_accuracy": "probe SGD bal.acc", "lbfgs_balanced_accuracy": "probe L-BFGS bal.acc",
             "lbfgs_average_precision": "probe AP", "lbfgs_boundary_accuracy": "boundary acc",
             "average_mAP": "head avg mAP"}
    sets = [name for name in FEATURE_SETS[1:] if name in table["average_mAP"]]
    header = "| metric (%) | original | " + " | ".join(f"{TITLES[n]} | - original [95% CI]" for n in sets) + " |"
    lines = [f"### {bench}: {len(cells)} pairs (data seeds x fit seeds)", "", header, "|---|---|" + "---|---|" * len(sets)]
    for column, entry in table.items():
        cols = [format_mean_std(entry["original"])]
        for name in sets:
            cols += [format_mean_std(entry[name]), format_difference(entry[f"{name}_minus_original"])]
        lines.append(f"| {names[column]} | " + " | ".join(cols) + " |")
    stopped = sum(bool(c["stopped"]) for c in cells)
    notes = f"Schedule: {', '.join(f'{k}={v}' for k, v in schedule.items())}"
    if "selected" in sets:
        identity = sum(c["best"] == "identity" for c in cells)
        notes += f". Probe selection picked the identity in {identity} of {len(cells)} fits"
    if "head_selected" in sets:
        kept = sum(c["head_best"] == "identity" for c in cells)
        seconds = [c["head_seconds_per_seed"] for c in cells if c.get("head_seconds_per_seed")]
        notes += (f"; head selection kept the identity in {kept} of {len(cells)} ({cells[0]['head_candidates']} "
                  f"checkpoints judged per fit" + (f", {sum(seconds) / len(seconds):.0f} s per candidate and proxy "
                                                   "seed" if seconds else "") + ")")
    lines += ["", notes + f"; guardrails stopped {stopped}; the loss sat at the constant-map loss in "
              f"{sum(c['constant_map_epochs'] for c in cells)} of {sum(c['epochs'] for c in cells)} epochs."]
    lines += format_controls(bench, cells, table, names)
    return "\n".join(lines) + "\n"


def format_controls(bench: str, cells: list[dict], table: dict, names: dict) -> list[str]:
    """The controls against each SoLa set (control - SoLa, paired): head avg mAP and the converged probe."""
    controls = [n for n in CONTROLS if n in table["average_mAP"]]
    solas = [n for n in SOLA_SETS if n in table["average_mAP"]]
    if not controls or not solas:
        return []
    pairs = [(control, sola) for control in controls for sola in solas]
    lines = ["", f"#### {bench}: is SoLa more than smoothing? control - SoLa, paired [95% CI]", "",
             "| metric (%) | " + " | ".join(f"{control} - {SHORT[sola]}" for control, sola in pairs) + " |",
             "|---|" + "---|" * len(pairs)]
    for column in ("average_mAP", "lbfgs_balanced_accuracy"):
        lines.append(f"| {names[column]} | " + " | ".join(format_difference(table[column][f"{c}_minus_{s}"])
                                                          for c, s in pairs) + " |")
    notes = []
    if "smooth" in controls:
        record = cells[0]["smooth_record"]
        notes.append(f"smooth: a fixed {record['kernel']} kernel of {record['kernel_size']} taps, dilation "
                     f"{record['dilation']} (the adapter's receptive field), zero-padded at the ends as the adapter")
    if "untrained" in controls:
        records = [c["untrained_record"] for c in cells]
        departures = [r["departure"] for r in records]
        scaled = sum(r["out_scale"] != 1.0 for r in records)
        span = f"{min(departures):.3g}" + (f" to {max(departures):.3g}" if max(departures) > min(departures) else "")
        notes.append(f"untrained: the fit's initial adapter, gated to the fitted adapter's departure ({span})"
                     + (f"; g's last conv scaled in {scaled} of {len(records)} (no gate reached it)" if scaled else ""))
    return lines + ["", "; ".join(notes) + "."]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench_out/evidence")
    parser.add_argument("--bench", default="splice,synthetic", help="comma list of splice, synthetic")
    parser.add_argument("--data-seeds", type=int, default=3)
    parser.add_argument("--fit-seeds", type=int, default=3)
    parser.add_argument("--schedule", default=None, help="JSON of fit overrides (default: the demo's schedule)")
    parser.add_argument("--clips", type=Path, default=CLIPS, help="trimmed-clip store spliced into the real-feature "
                        "benchmark (default: ../shared/data/features/gym_clips)")
    parser.add_argument("--criteria", default="probe", help="comma list of selection criteria to measure: probe, "
                        "head (the proxy head, default settings of sola.evaluate.select_head)")
    parser.add_argument("--fitted", action="store_true", help="also measure the last adapter (as fitted)")
    parser.add_argument("--controls", default="", help="also measure these controls: smooth (a fixed box kernel of "
                        "the adapter's receptive field), untrained (the fit's initial adapter gated to the fitted "
                        "adapter's departure); each is set against every SoLa set measured")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--only-data-seeds", default="", help="comma list: run only these data seeds (e.g. two "
                        "processes on disjoint seeds with the same --out; a last run without it gathers the table)")
    parser.add_argument("--checkpoints", default="", help="also measure these checkpoint epochs (shorter budgets), "
                        "e.g. 2,4")
    args = parser.parse_args(argv)
    schedule = json.loads(args.schedule) if args.schedule else dict(DEMO_SCHEDULE)
    if args.threads:
        torch.set_num_threads(args.threads)
    criteria = tuple(c.strip() for c in args.criteria.split(",") if c.strip())
    controls = tuple(c.strip() for c in args.controls.split(",") if c.strip())
    unknown = sorted(set(controls) - set(CONTROLS)) + sorted(set(criteria) - {"probe", "head"})
    if unknown:
        parser.error(f"unknown control or criterion {unknown[0]!r}: controls are {', '.join(CONTROLS)}, "
                     "criteria probe, head")
    out = Path(args.out)
    data_seeds = [int(d) for d in args.only_data_seeds.split(",") if d.strip()] or list(range(args.data_seeds))
    report, results = [], {}
    for bench in args.bench.split(","):
        root = out / bench
        cells = [run_cell(bench, d, f, schedule, root, lambda m: print(m, file=sys.stderr, flush=True), args.clips,
                          criteria, args.fitted, controls)
                 for d in data_seeds for f in range(args.fit_seeds)]
        table = summarise(cells)
        results[bench] = {"schedule": schedule, "cells": cells, "table": table}
        report.append(format_table(bench, schedule, cells, table))
        if args.checkpoints:
            epochs = [int(e) for e in args.checkpoints.split(",")]
            by_epoch: dict[int, list[dict]] = {e: [] for e in epochs}
            for cell in cells:
                for epoch, row in checkpoint_rows(bench, cell, epochs, root).items():
                    by_epoch[epoch].append(row)
            first = json.loads((root / "data0" / "fit0" / "run" / "metrics.jsonl").read_text().splitlines()[0])
            results[bench]["by_epoch"] = by_epoch
            report.append(format_budget_table(bench, cells, by_epoch, first["steps"]))
    text = "\n".join(report)
    print(text)
    atomic_write_text(out / "evidence.md", text)
    atomic_write_text(out / "evidence.json", json.dumps(json_ready(results), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
