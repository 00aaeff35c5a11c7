"""The report of a `sola train` run directory: config, curves per epoch, TSM before/after, selection."""

from __future__ import annotations

import math
from pathlib import Path

from sola.core.errors import CheckpointError, SolaError, StoreError
from sola.core.runs import (ADAPTER, ADAPTER_METRICS, ADAPTER_RUN, ADAPTER_SECTIONS, BEST, CONFIG, IDENTITY, RECORD,
                            SELECTION, fitted_store, metrics_summary, read_json, read_metrics, read_record,
                            run_config_file, run_kind)

FIX = "the run folder is damaged; rerun `sola train` in a new --out"
from sola.evaluate.probe.config import SELECTABLE
from sola.viz.report.document import Code, Figure, Note, Report, Table, number
from sola.viz.report.figures import Panel, line_panels

TSM_MAX_SNIPPETS = 1024  # a T x T map per picture: a video longer than this is drawn only when none is shorter
TSM_SCAN = 50  # videos looked at (in id order) to find one to draw
EPOCH_ROWS = 30  # rows of the per-epoch table; a longer run shows evenly spaced epochs (and the last)
HEALTH = (("cosine", "mean cosine"), ("rank", "effective rank"), ("spread_ratio", "spread ratio"),
          ("rank_ratio", "rank ratio"))


def is_train_run(path: Path) -> bool:
    """Whether `path` is a `sola train` run directory (a config and run.json or checkpoints)."""
    return run_kind(path) == ADAPTER_RUN and (path / CONFIG).exists()


def train_report(run_dir: str | Path, images: Path) -> Report:
    """The report of the adapter fit in `run_dir`; figures are written to the folder `images`."""
    run_dir = Path(run_dir)
    report = Report(f"SoLa fit: {run_dir.name}", "train", str(run_dir))
    config = run_config_file(run_dir, ADAPTER_SECTIONS, FIX)
    records = read_metrics(run_dir, ADAPTER_METRICS)
    _overview(report, run_dir, records)
    config_text = config.read_text()
    report.section("config", "Config").add(
        Note(f"`{CONFIG}` of the run: the full config it was fitted with." + _budget_words(config_text, records)),
        Code(config_text, "yaml"))
    _curves(report, records, images)
    _tsm(report, run_dir, images)
    _selection(report, run_dir, images)
    return report


def _overview(report: Report, run_dir: Path, records: list[dict]) -> None:
    section = report.section("run", "Run")
    record = read_record(run_dir) or {}
    summary = metrics_summary(run_dir)
    rows = [["run directory", str(run_dir.resolve())],
            ["features", f"{record.get('features', '—')} (layout {record.get('layout', '—')})"]]
    if summary:
        rows += [["epochs", str(summary["epochs"])], ["steps", str(summary["steps"])],
                 ["seconds", number(summary["seconds"], 1)],
                 ["loss (first → last epoch)", f"{number(summary['first_loss'])} → {number(summary['last_loss'])}"],
                 ["gate tanh(alpha)", number(summary["gate"], signed=True)],
                 ["departure", number(summary["departure"])]]
    selection = _selection_table(run_dir)
    if selection:
        rows.append(["selected", str(selection.get("best"))])
    section.add(Table("run-summary", ["", "value"], rows, layout="facts"))
    if not records:
        section.add(Note(f"No finished epoch yet: `{run_dir / 'metrics.jsonl'}` is empty.", warning=True))
    elif "stopped" in records[-1]:
        section.add(Note(f"The fit stopped at epoch {records[-1]['epoch']}: {records[-1]['stopped']}", warning=True))
    if summary.get("constant_map"):
        section.add(Note("The last epoch's loss sits at the loss of a constant similarity map: the objective "
                         "learned little here.", warning=True))


def _budget_words(config_text: str, records: list[dict]) -> str:
    """" fit.steps 100 overrides fit.epochs 150: 2 epochs ran (100 steps)." when a step budget was set."""
    import yaml

    try:
        fit = (yaml.safe_load(config_text) or {}).get("fit") or {}
    except (yaml.YAMLError, AttributeError):
        return ""
    if not isinstance(fit, dict) or not fit.get("steps"):
        return ""
    ran = f": {records[-1]['epoch']} epochs ran ({sum(int(r.get('steps', 0)) for r in records)} steps)" if records else ""
    return f" fit.steps {fit['steps']} overrides fit.epochs {fit.get('epochs')}{ran}."


def _health(record: dict, key: str) -> float:
    value = (record.get("health") or {}).get(key)
    return math.nan if value is None else float(value)


def _curves(report: Report, records: list[dict], images: Path) -> None:
    section = report.section("curves", "Training curves")
    if not records:
        section.add(Note("No epochs to draw.", warning=True))
        return
    epochs = [r["epoch"] for r in records]
    section.add(Figure(line_panels(images / "curves.png", epochs, [
        Panel("Similarity Matching loss", {"loss": [r["loss"] for r in records]}),
        Panel("gate tanh(alpha)", {"gate": [r["gate"] for r in records]}),
        Panel("departure ||tanh(alpha) g(f)|| / ||f||", {
            "last batch": [r["departure"] for r in records],
            "health batch": [_health(r, "departure") for r in records]}),
    ]), "Per epoch: the mean loss, the gate, and how far the adapted features depart from the original "
        "(on the epoch's last batch, and on the fixed health batch)."))
    if any(r.get("health", {}).get("finite") for r in records):
        section.add(Figure(line_panels(images / "health.png", epochs, [
            Panel("mean cosine between snippets", {"SoLa": [_health(r, "cosine") for r in records],
                                                   "original": [_health(r, "cosine_original") for r in records]}),
            Panel("effective rank", {"SoLa": [_health(r, "rank") for r in records],
                                     "original": [_health(r, "rank_original") for r in records]}),
            Panel("ratio to the original", {"angular spread": [_health(r, "spread_ratio") for r in records],
                                            "effective rank": [_health(r, "rank_ratio") for r in records]},
                  lines={"unchanged": 1.0}),
        ]), "Feature health on one fixed batch of windows (`sola.adapt.health`): a collapse drives the mean "
            "cosine to 1 and both ratios towards 0."))
    else:
        section.add(Note("The metrics log records no feature-health figures (a run of an older sola, or every "
                         "epoch was non-finite).", warning=True))
    shown = _spread(len(records), EPOCH_ROWS)
    rows = [[str(r["epoch"]), number(r["loss"]), number(r["gate"], signed=True), number(r["departure"]),
             *[number(_health(r, key), 3) for key, _ in HEALTH], f"{r.get('lr', math.nan):.3g}",
             number(r.get("seconds"), 2)] for r in (records[i] for i in shown)]
    caption = "" if len(shown) == len(records) else f"{len(shown)} of {len(records)} epochs, evenly spaced."
    section.add(Table("epochs", ["epoch", "loss", "gate", "departure", *[name for _, name in HEALTH], "lr", "s"],
                      rows, caption))


def _spread(count: int, limit: int) -> list[int]:
    """Up to `limit` indices of `range(count)`, evenly spaced, the first and the last included."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def _tsm(report: Report, run_dir: Path, images: Path) -> None:
    section = report.section("tsm", "Temporal self-similarity")
    if not (run_dir / ADAPTER).exists():
        section.add(Note(f"No `{ADAPTER}` yet (no finished checkpoint): nothing to draw.", warning=True))
        return
    # After selection the run's adapter is best.safetensors (what `--adapter RUN` means everywhere)
    adapter, which = _tsm_adapter(run_dir)
    from sola.adapt.adapter import load_adapter  # torch: only a train report draws a TSM

    load_adapter(adapter)  # a corrupt adapter is the run's fault, not the store's: raises `CheckpointError`
    try:
        store = fitted_store(run_dir)
        video, length = _tsm_video(store)
        from sola.evaluate.tsm import write_tsm_picture  # torch: only a train report draws a TSM

        path = write_tsm_picture(store, video, images / "tsm.png", adapter=adapter)
    except (SolaError, OSError) as exc:  # the store moved or was deleted since the fit
        where = (read_record(run_dir) or {}).get("features", f"(no {RECORD})")
        section.add(Note(f"No TSM picture: the store the run was fitted on, {where}, cannot be read: {exc}",
                         warning=True))
        return
    section.add(Figure(path, f"Cosine self-similarity of video `{video}` ({length} snippets) of the fitted store, "
                             f"before and after {which}; the inset is the Similarity Matching target."))


def _tsm_adapter(run_dir: Path) -> tuple[Path, str]:
    """The adapter the TSM shows and how the caption names it: `best.safetensors` once `sola select` ran
    (the adapter `--adapter RUN` means), else the last `adapter.safetensors`."""
    if not (run_dir / BEST).exists():
        return run_dir / ADAPTER, f"the run's `{ADAPTER}` (the fit's last adapter; `sola select` has not run)"
    best = (_selection_table(run_dir) or {}).get("best")
    if best == IDENTITY:
        chosen = "the identity: after equals before"
    else:
        chosen = f"checkpoint {best}" if best else "the selected checkpoint"
    return run_dir / BEST, f"the run's `{BEST}` ({chosen}, chosen by `sola select`)"


def _tsm_video(store) -> tuple[str, int]:
    """`(video id, snippets)` to draw: the first (by id) of at most `TSM_MAX_SNIPPETS`, else the shortest seen."""
    seen = []
    for video in store.video_ids()[:TSM_SCAN]:
        length = int(store.shape(video)[0])
        if length <= TSM_MAX_SNIPPETS:
            return video, length
        seen.append((length, video))
    if not seen:
        raise StoreError(f"{store.path}: the store holds no video")
    length, video = min(seen)
    return video, length


def _selection_table(run_dir: Path) -> dict | None:
    """The run's `select.json` (None before `sola select`); raises `CheckpointError` for a corrupt one."""
    table = read_json(run_dir / SELECTION, None, dict, ("metric", "best", "rows"), "rerun `sola select` on the run")
    if table is not None and not (isinstance(table["rows"], dict) and IDENTITY in table["rows"]
                                  and all(isinstance(row, dict) for row in table["rows"].values())):
        raise CheckpointError(f"{run_dir / SELECTION}: 'rows' is not a table of candidates; "
                              "rerun `sola select` on the run")
    return table


def _selection(report: Report, run_dir: Path, images: Path) -> None:
    section = report.section("selection", "Checkpoint selection")
    table = _selection_table(run_dir)
    if not table:
        section.add(Note(f"No selection ran on this run (no `{SELECTION}`): `sola select` probes the identity and "
                         "every checkpoint on held-out videos and writes it."))
        return
    metric = table["metric"]
    section.add(Note(table.get("message", "")))
    names = list(table["rows"])
    columns = [metric, *[c for c in SELECTABLE if c != metric and any(c in row for row in table["rows"].values())]]
    rows = [[name, "✓" if name == table["best"] else "", *[number(table["rows"][name].get(c), 3) for c in columns]]
            for name in names]
    section.add(Table("selection", ["candidate", "selected", *columns], rows,
                      f"Linear probe per candidate on {table.get('val_videos', '?')} held-out videos of subset "
                      f"`{table.get('val_subset', table.get('subset'))}`; selection metric `{metric}`, a checkpoint "
                      f"wins only above the identity + {table.get('min_gain', 0):g}."))
    epochs = [(0 if name == IDENTITY else int(name.split("_")[1]), name) for name in names]
    epochs.sort()
    section.add(Figure(line_panels(images / "selection.png", [e for e, _ in epochs], [
        Panel(f"probe {metric} per checkpoint", {metric: [table["rows"][n][metric] for _, n in epochs]},
              lines={"identity": table["rows"][IDENTITY][metric]}),
    ]), f"`{metric}` of the probe per checkpoint epoch (epoch 0: the identity, the original features)."))
