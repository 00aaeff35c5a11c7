"""The comparison's table: where results live, the summary over seeds, the verdict, the Markdown.

Apart from `sola.experiments.compare` (which runs heads, so imports torch) so that `sola report` of a
comparison and anything else that only reads `compare.json` stays light.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from sola.core.errors import ConfigError
from sola.core.stats import format_difference, format_mean_std, learned_nothing, paired_difference, verdict
from sola.tal.config import TRAINING_MODES

CONTROLS = ("smooth", "untrained")  # the head alone on control features (sola.adapt.controls), judged vs SoLa too
# "sola": the head alone on SoLa features (the selected adapter); "fitted": on the features of the run's last adapter,
# as fitted (what selection may have discarded)
MODES = (TRAINING_MODES[0], "sola", "fitted", *TRAINING_MODES[1:], *CONTROLS)
FEATURE_MODES = ("sola", "fitted", *CONTROLS)  # the head alone (trained as the baseline) on other features
SOLA_RECORD = "sola_adapter.json"  # in OUT: which adapter made the "sola" features (and so its results)
RESULTS = "results"
TABLE = "compare.json"


def result_path(out_dir: str | os.PathLike, mode: str, seed: int) -> Path:
    """Where the result of one (mode, seed) of a comparison is saved (its presence: that run is done)."""
    return Path(out_dir) / RESULTS / f"{mode}_seed{seed}.json"


def predictions_path(out_dir: str | os.PathLike, mode: str, seed: int) -> Path:
    """Where the detections of one (mode, seed) on the evaluation subset are kept (ActivityNet format)."""
    return Path(out_dir) / RESULTS / f"{mode}_seed{seed}.predictions.json"


def parse_modes(text: str) -> list[str]:
    """`"baseline,sola"` -> ["baseline", "sola"]; raises `ConfigError` on unknown or repeated modes."""
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes or len(set(modes)) != len(modes):
        raise ConfigError(f"--modes takes a comma list of distinct modes among {', '.join(MODES)}; got {text!r}")
    return modes


def summarise(results: dict[str, list[dict]], probes: dict[str, dict], tal_config, sm_weight: float) -> dict:
    """Mean and std over seeds of every mAP column, with probe accuracy and seconds per epoch."""
    rows = {}
    for mode, runs in results.items():
        thresholds = list(runs[0]["mAP"])
        per_tiou = np.array([[run["mAP"][t] for t in thresholds] for run in runs])  # (seeds, tIoUs)
        average = np.array([run["average_mAP"] for run in runs])
        probe = probes.get(mode, {})
        rows[mode] = {
            "mAP_per_seed": {t: per_tiou[:, k].tolist() for k, t in enumerate(thresholds)},
            "mAP_mean": dict(zip(thresholds, per_tiou.mean(0).tolist())),
            "mAP_std": dict(zip(thresholds, per_tiou.std(0).tolist())),
            "average_mAP_mean": float(average.mean()),
            "average_mAP_std": float(average.std()),
            "seconds_per_epoch": float(np.mean([run["seconds_per_epoch"] for run in runs])),
            "probe_accuracy": probe.get("sgd_accuracy"),
            "probe_balanced_accuracy": probe.get("lbfgs_balanced_accuracy"),
            "seeds": [run["seed"] for run in runs],
            "average_mAP_per_seed": average.tolist(),
            "scoring": runs[0]["scoring"],
            "coverage": runs[0].get("coverage"),
        }
    baseline = rows.get("baseline")
    for mode, row in rows.items():
        if baseline is not None and mode != "baseline" and row["seeds"] == baseline["seeds"]:
            row["average_mAP_minus_baseline"] = paired_difference(row["average_mAP_per_seed"],
                                                                  baseline["average_mAP_per_seed"])
            if "mAP_per_seed" in baseline and list(row["mAP_per_seed"]) == list(baseline["mAP_per_seed"]):
                row["mAP_minus_baseline"] = {t: paired_difference(values, baseline["mAP_per_seed"][t])
                                             for t, values in row["mAP_per_seed"].items()}
    sola = rows.get("sola")
    for mode, row in rows.items():  # a control is judged against SoLa too: is SoLa more than it?
        if sola is not None and mode in CONTROLS and row["seeds"] == sola["seeds"]:
            row["average_mAP_minus_sola"] = paired_difference(row["average_mAP_per_seed"], sola["average_mAP_per_seed"])
            if list(row["mAP_per_seed"]) == list(sola["mAP_per_seed"]):
                row["mAP_minus_sola"] = {t: paired_difference(values, sola["mAP_per_seed"][t])
                                         for t, values in row["mAP_per_seed"].items()}
    first = next(iter(rows.values()), {})
    return {"modes": list(results), "rows": rows, "sm_weight": sm_weight, "coverage": first.get("coverage"),
            "test_subset": tal_config.data.test_subset, "train_subset": tal_config.data.train_subset}


def verdicts(table: dict) -> list[dict]:
    """One verdict per (mode, metric) against the baseline, from the paired seeds: average mAP, then
    mAP at each tIoU; a control mode (`CONTROLS`) also gets one on average mAP against "sola" when sola
    is among the modes. Each: `{"mode", "against", "metric", "text"}` plus the paired difference, where
    `text` is `sola.core.stats.verdict`'s line ("SoLa helps: +1.2 [+0.3, +2.1] (3 pairs)"; against sola
    "smooth trails SoLa: ..."). When both heads of a pair stayed below `sola.core.stats.LEARNED_NOTHING_MAP`,
    one entry with "no_verdict" True says the head learned nothing."""
    found = []
    rows = table["rows"]
    for mode, row in rows.items():
        name = "SoLa" if mode == "sola" else mode
        for against, key, words in (("baseline", "average_mAP_minus_baseline", ("helps", "hurts")),
                                    ("sola", "average_mAP_minus_sola", ("beats SoLa", "trails SoLa"))):
            if key not in row:
                continue
            common = {"mode": mode, "against": against}
            nothing = learned_nothing({against: rows[against]["average_mAP_mean"], mode: row["average_mAP_mean"]})
            if nothing:  # two heads that learned nothing cannot tell features apart
                text = f"{nothing}: no verdict; train longer (train.epochs) or check the config"
                found.append({**common, "metric": "avg mAP", "text": text, "no_verdict": True, **row[key]})
                continue
            metrics = {"avg mAP": row[key]}
            if against == "baseline":
                metrics.update({f"mAP@{t}": d for t, d in row.get("mAP_minus_baseline", {}).items()})
            for metric, difference in metrics.items():
                found.append({**common, "metric": metric, "text": verdict(difference, name, words=words), **difference})
    return found


def verdict_lines(table: dict, average_only: bool = False) -> list[str]:
    """The verdicts as printed lines: `avg mAP (sola vs baseline): SoLa helps: +1.2 [+0.3, +2.1] (3 pairs)`;
    with `average_only`, only the average-mAP line of each mode (what a terminal shows; compare.md and the report
    keep the lines per tIoU). Tables from before verdicts were kept get theirs computed from their rows.
    """
    found = table.get("verdict") or verdicts(table)
    if average_only:
        found = [v for v in found if v["metric"] == "avg mAP"]
    return [f"{v['metric']} ({v['mode']} vs {v.get('against', 'baseline')}): {v['text']}" for v in found]


def table_cells(table: dict) -> tuple[list[str], list[list[str]]]:
    """`(header, rows of cells)` of the comparison: mAP in %, mean ± std over seeds (compare.md, reports)."""
    rows = table["rows"]
    thresholds = list(next(iter(rows.values()))["mAP_mean"])
    versus_sola = any("average_mAP_minus_sola" in row for row in rows.values())
    header = ["mode", *[f"mAP@{t}" for t in thresholds], "avg mAP", "avg mAP - baseline [95% CI]",
              *(["avg mAP - sola [95% CI]"] if versus_sola else []), "probe acc", "probe bal.acc", "s/epoch"]
    lines = []
    for mode, row in rows.items():
        n = len(row["seeds"])
        cells = [mode]
        cells += [format_mean_std({"mean": row["mAP_mean"][t], "std": row["mAP_std"][t], "n": n}, digits=2)
                  for t in thresholds]
        cells.append(format_mean_std({"mean": row["average_mAP_mean"], "std": row["average_mAP_std"], "n": n}, digits=2))
        difference = row.get("average_mAP_minus_baseline")
        cells.append(format_difference(difference, digits=2) if difference else "—")
        if versus_sola:
            difference = row.get("average_mAP_minus_sola")
            cells.append(format_difference(difference, digits=2) if difference else "—")
        for key in ("probe_accuracy", "probe_balanced_accuracy"):
            cells.append("—" if row[key] is None else f"{100 * row[key]:.2f}")
        cells.append(f"{row['seconds_per_epoch']:.2f}")
        lines.append(cells)
    return header, lines


def table_notes(table: dict) -> list[str]:
    """The sentences under the comparison table: protocol, scoring, which adapter made the SoLa features."""
    rows = table["rows"]
    first = next(iter(rows.values()))
    notes = [
        f"Head trained on `{table['train_subset']}`, evaluated on `{table['test_subset']}`; mean ± std over "
        f"{len(first['seeds'])} seed(s), the difference paired by seed with its 95% t-interval; scoring: "
        f"{first['scoring']}. Probe: reference SGD accuracy and "
        "converged class-balanced logistic regression (action vs background snippets)."
    ]
    coverage = table.get("coverage")
    if coverage:
        notes.append(f"Every mAP here is {coverage['line']}: the head predicts only videos with features, and "
                     "the per-class ground-truth counts are those of the videos scored.")
    used = table.get("sola_adapter")
    if used and "sola" in rows:
        notes.append(f"SoLa features: {used['message'] or 'from ' + used['source']}.")
    fitted = table.get("fitted_adapter")
    if fitted and "fitted" in rows:
        notes.append(f"Fitted: the head on the features of {fitted['source']}, the adapter as fitted (no selection)"
                     + (f"; {fitted['reused_from']}'s features and heads, the same adapter" if fitted.get("reused_from")
                        else "") + ".")
    notes += control_notes(table)
    return notes


def kept_original_line(table: dict) -> str | None:
    """"The original features were kept: ..." when selection kept the identity for the sola mode, else None."""
    used = table.get("sola_adapter") or {}
    if not used.get("kept_original"):
        return None
    shown = " and the fitted row shows the adapter that selection discarded" if "fitted" in table.get("rows", {}) else ""
    why = (used.get("message") or "selection chose the identity").rstrip(".")
    return (f"The original features were kept: {why}. The sola row is the baseline's (the same features, the same "
            f"heads){shown}.")


def control_notes(table: dict) -> list[str]:
    """What made the control features (`compare.json`'s "controls"): the smoothing kernel, the untrained gate."""
    notes = []
    for mode, record in (table.get("controls") or {}).items():
        if mode not in table["rows"]:
            continue
        if mode == "smooth":
            sigma = f", sigma {record['sigma']:g} taps" if record.get("sigma") else ""
            notes.append(f"Control smooth: the original features convolved along time with a fixed {record['kernel']} "
                         f"kernel of {record['kernel_size']} taps, dilation {record['dilation']}{sigma} (zero-padded "
                         "at the ends, as the adapter's conv).")
        elif mode == "untrained":
            scaled = f", g's last conv scaled x{record['out_scale']:.3g}" if record.get("out_scale", 1.0) != 1.0 else ""
            notes.append(f"Control untrained: the adapter at its initialisation (seed {record['seed']}){scaled}, "
                         f"gate tanh(alpha) = {record['gate']:.4g} so that its departure equals SoLa's "
                         f"({record['departure']:.4g}, mean ||change|| / ||f|| on {record['videos']} videos): "
                         "the architecture without Similarity Matching.")
    return notes


def format_markdown(table: dict, with_verdict: bool = True) -> str:
    """The comparison as a Markdown table (mAP in %, mean +- std over seeds), its notes and (`with_verdict`) every
    verdict line."""
    header, rows = table_cells(table)
    kept = kept_original_line(table)
    lines = ([f"**{kept}**", ""] if kept else []) + ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    for note in table_notes(table):
        lines += ["", note]
    found = verdict_lines(table) if with_verdict else []
    if found:
        lines += ["", "**Verdict** (paired seeds, 95% t-interval):", ""] + [f"- {line}" for line in found]
    return "\n".join(lines) + "\n"
