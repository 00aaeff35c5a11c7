"""The paper's main experiment: the same TAL head on original and on SoLa features, side by side.

Modes:
  baseline     the head on the original features
  sola         the head on SoLa features (a fitted adapter, or one fitted here by Similarity Matching; with a run,
               the checkpoint that selection chose, possibly the identity)
  fitted       the head on the features of the run's last adapter, as fitted (`OUT/fitted_features`): what
               selection may have discarded
  unified      a fresh SoLa adapter in front of the head, trained jointly with the TAL loss (the paper's ablation)
  unified+sm   the same plus Similarity Matching as an auxiliary loss (beyond the paper)
  smooth       control: the head on the original features smoothed along time by a fixed kernel of the
               adapter's receptive field (`OUT/smooth_features`; sola.adapt.controls)
  untrained    control: the head on the features of an untrained adapter gated to SoLa's departure
               (`OUT/untrained_features`): the architecture without Similarity Matching
Every mode runs with the same seeds; each (mode, seed) result is saved, so an interrupted
comparison resumes where it stopped.

OUT holds `compare.json` + `compare.md` (the table; `compare.json` also names the annotation file
and subsets, so a report can rebuild the ground truth), `sola_adapter.json`, `sola_run/` (an adapter
fitted here, with its selection), `sola_select/` (the selection on a run directory given as `adapter`:
that run, an input, is never written into), and per (mode, seed)
`results/{mode}_seed{seed}.json` (mAP, timing, per-class AP under "per_class") beside
`results/{mode}_seed{seed}.predictions.json` (the head's detections on the evaluation subset,
ActivityNet format). Directories made before per-class AP and predictions were kept resume as
they are, without them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from sola.adapt.adapter import adapter_digest, load_adapter, resolve_adapter_path
from sola.adapt.controls import SmoothConfig
from sola.adapt.fit import fit_adapter
from sola.adapt.transform import transform_store
from sola.core.atomic import atomic_write_bytes, atomic_write_text, json_text
from sola.core.config import SoLaConfig
from sola.core.errors import ConfigError
from sola.core.runs import ADAPTER, BEST, EVALUATION, PREDICTIONS, SELECTION, STATE, list_checkpoints, read_json
from sola.data.annotations import canonical_subset
from sola.data.stores import FeatureStore
from sola.evaluate.probe import ProbeConfig, compare_probe, json_ready
from sola.evaluate.select_head import choose_checkpoint
from sola.experiments.compare_table import (CONTROLS, FEATURE_MODES, MODES, RESULTS, SOLA_RECORD,  # noqa: F401
                                            TABLE, format_markdown, kept_original_line, parse_modes,
                                            predictions_path, result_path, summarise, table_cells, table_notes,
                                            verdict_lines, verdicts)
from sola.experiments.controls import adapter_shape, control_store
from sola.tal.experiment import run_experiment

SELECT_DIR = "sola_select"  # in OUT: the selection on a run directory given as the adapter
FITTED_RECORD = "fitted_adapter.json"  # in OUT: which adapter made the "fitted" features (and so its results)


def sola_features(
    store: FeatureStore,
    out_dir: Path,
    adapter=None,
    sola_config: SoLaConfig | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> FeatureStore:
    """The SoLa-transformed copy of `store` in `out_dir/sola_features` (fitting an adapter first if none).

    No checkpoint selection (it needs annotations): see `sola_store`.
    """
    return sola_store(store, out_dir, adapter=adapter, sola_config=sola_config, select=False,
                      progress=progress, log=log)[0]


def sola_store(
    store: FeatureStore,
    out_dir: Path,
    annotations=None,
    tal_config=None,
    adapter=None,
    sola_config: SoLaConfig | None = None,
    select: bool = True,
    progress: bool = True,
    log: Callable[[str], None] = print,
    heldout_subset: str | None = None,
    selection: dict | None = None,
) -> tuple[FeatureStore, dict]:
    """The features of the "sola" mode and a record of the adapter that made them.

    Without `adapter`, one is fitted in `out_dir/sola_run`. With `select` (and `annotations`), the
    adapter is chosen among the identity and the run's checkpoints by `sola.evaluate.select_head.choose_checkpoint`
    on a held-out part of the head's training subset (`tal_config.data.train_subset`), by the probe
    or, with `selection={"criterion": "head"}` (overrides of the probe config's `select` section), by
    a proxy of this head; a run directory given as `adapter` is selected on the same way, into
    `out_dir/sola_select` (the run is an input: never written into). A `select.json` (in `out_dir/sola_select`,
    else the run's own from `sola select`) is reused when it was made on that subset, store, checkpoints and
    selection config, and for the head criterion the same head config. An adapter file or object is used as given.
    When the identity wins (or the adapter's gate is 0), the "sola" features are `store` itself:
    nothing is written. Otherwise `out_dir/sola_features` holds the transformed copy.

    The record (`compare.json`'s "sola_adapter"): {"source", "selected", "best", "message",
    "features", "digest"}. Raises `ConfigError` when `out_dir` holds "sola" outputs of another adapter.
    """
    out_dir = Path(out_dir)
    run_dir = chosen = None
    select_dir = out_dir / SELECT_DIR  # selection on a run given as `adapter`; one fitted here selects in itself
    if adapter is None:
        run_dir = out_dir / "sola_run"
        log(f"fitting a SoLa adapter in {run_dir}")
        config = sola_config or SoLaConfig()
        chosen = fit_adapter(store, config, run_dir, resume=(run_dir / STATE).is_file(),
                             progress=progress, log=log)
        source = str(run_dir / ADAPTER)
        select_dir = run_dir
    elif hasattr(adapter, "residual"):
        chosen, source = adapter, "the adapter passed in"
    elif Path(adapter).is_dir():
        run_dir = Path(adapter)
        source = str(run_dir)
    else:
        source = str(resolve_adapter_path(adapter))
        chosen = load_adapter(source)
    record = {"source": source, "selected": False, "best": None, "message": None, "kept_original": False}
    if run_dir is not None:
        record["run"] = str(run_dir)  # the "fitted" mode takes its last adapter
    if select and run_dir is not None and annotations is not None and list_checkpoints(run_dir):
        table, where = _selection(run_dir, select_dir, store, annotations, tal_config, progress, log, heldout_subset,
                                  selection)
        log(table["message"])
        record.update(selected=True, best=table["best"], message=table["message"],
                      source=str(run_dir / "checkpoints"), select_table=str(where / SELECTION),
                      criterion=table.get("criterion", "probe"), kept_original=bool(table["identity_wins"]))
        chosen = None if table["identity_wins"] else load_adapter(table["best_checkpoint"])
    elif chosen is None:  # a run directory, not selected here: its best.safetensors, else adapter.safetensors
        if select and annotations is not None:
            log(f"{run_dir}: no checkpoints to select from; using its adapter as it is")
        record["source"] = str(resolve_adapter_path(run_dir))
        chosen = load_adapter(run_dir)
    if chosen is not None and chosen.gate == 0.0:
        chosen = None  # an identity adapter: output == input
    record["digest"] = "identity" if chosen is None else adapter_digest(chosen)
    target = out_dir / "sola_features"
    record["features"] = str(store.path) if chosen is None else str(target)
    _check_previous(out_dir, record)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / SOLA_RECORD, json_text(record, indent=1))  # before any output it vouches for
    if chosen is None:
        log("the sola mode uses the original features as they are (the identity; cheaper than writing a copy)")
        return store, record
    transform_store(chosen, store, target, progress=progress)
    return store.open_output(target), record


def _selection(run_dir: Path, select_dir: Path, store: FeatureStore, annotations, tal_config, progress: bool, log,
               heldout_subset: str | None = None, selection: dict | None = None) -> tuple[dict, Path]:
    """`choose_checkpoint` on the head's training subset into `select_dir`, or a `select.json` that still
    holds (in `select_dir`, else in the run: read, never written); returns the table and its folder."""
    subset = tal_config.data.train_subset if tal_config is not None else None
    if heldout_subset and tal_config is not None and (
            canonical_subset(heldout_subset) == canonical_subset(tal_config.data.test_subset)):
        raise ConfigError(f"--heldout-subset {heldout_subset} is the evaluation subset; selection must never see it")
    grid = _probe_grid(annotations, subset, tal_config) if tal_config is not None else {}
    config = ProbeConfig.from_dict({"data": grid, "select": dict(selection or {})}).validate()
    for folder in dict.fromkeys([select_dir, run_dir]):
        previous = read_json(folder / SELECTION, {}) if (folder / BEST).is_file() else {}
        if _selection_holds(previous, run_dir, store, config, tal_config, subset, heldout_subset):
            log(f"reusing the selection in {folder / SELECTION}")
            return previous, folder
    log(f"selecting among the identity and the checkpoints of {run_dir} by the {config.select.criterion} on "
        f"held-out videos of subset {subset or '(default)'} (into {select_dir})")
    return choose_checkpoint(run_dir, store, annotations, config, tal_config, subset=subset,
                             heldout_subset=heldout_subset, progress=progress, log=log, out_dir=select_dir), select_dir


def _selection_holds(previous: dict, run_dir: Path, store: FeatureStore, config: ProbeConfig, tal_config,
                     subset: str | None, heldout_subset: str | None) -> bool:
    """Whether a saved `select.json` answers this selection: the same checkpoints, store, subsets,
    selection config (criterion, probe settings) and, for the head criterion, head config."""
    if "best" not in previous:
        return False
    current = [f"epoch_{epoch:04d}" for epoch, _ in list_checkpoints(run_dir)]
    same = (previous.get("checkpoints") == current
            and previous.get("features") == str(Path(store.path).resolve())
            and (subset is None or canonical_subset(previous.get("subset", "")) == canonical_subset(subset))
            and (heldout_subset is None
                 or canonical_subset(previous.get("val_subset", "")) == canonical_subset(heldout_subset))
            and previous.get("config") == _plain(config.to_dict()))
    if same and config.select.criterion == "head":
        return tal_config is None or previous.get("head_config") == _plain(tal_config.to_dict())
    return same


def _plain(value):
    """`value` as it reads back from JSON (tuples become lists, NaN None), for comparing with a saved table."""
    return json.loads(json.dumps(json_ready(value)))


def _probe_grid(annotations, subset: str | None, tal_config) -> dict:
    """Snippet-grid options for the probe that follow the head's (`sola.tal.experiment.build_items`)."""
    data = tal_config.data
    videos = list((annotations.subset(subset) if subset else annotations).values())
    fps = data.default_fps or None
    if videos and all(v.feat_stride is not None for v in videos):
        return {"fps": fps}  # each annotation's own stride
    if fps or (videos and all(v.fps for v in videos)):
        return {"feat_stride": data.feat_stride, "num_frames": data.num_frames, "fps": fps}
    return {}  # snippets spread over the annotated duration


def _check_previous(out_dir: Path, record: dict) -> None:
    """Refuse to mix "sola" outputs of two adapters in one `out_dir` (results resume per mode and seed)."""
    marker = out_dir / SOLA_RECORD
    if not (any((out_dir / RESULTS).glob("sola_seed*.json")) or (out_dir / "sola_features").is_dir()):
        return
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous.get("digest") == record["digest"]:
            return
        why = f"were made with another adapter ({previous.get('best') or previous.get('source')})"
    elif not record["selected"]:
        return  # from before these records, without selection: resumed as it was started
    else:
        why = "were made before checkpoint selection, by the run's final adapter"
    raise ConfigError(
        f"{out_dir}: its sola features/results {why}, not {record['best'] or record['source']}; compare in a new "
        f"--out, or delete {out_dir / 'sola_features'}, {out_dir / RESULTS}/sola_seed*.json and {marker}"
        + ("; --no-select resumes it as it was started" if record["selected"] and not marker.is_file() else "")
    )


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
    probe_table: dict | Callable[[], dict] | None = None,
    select: bool = True,
    heldout_subset: str | None = None,
    selection: dict | None = None,
    smooth: dict | None = None,
    fitted_store: FeatureStore | None = None,
    sola_record: dict | None = None,
    jobs: int = 1,
) -> dict:
    """Train and evaluate the head per mode and seed; write `compare.json` and `compare.md` in `out_dir`.

    `adapter`: a `SoLaAdapter`, an adapter file or run directory for the "sola" mode; without it one
    is fitted with `sola_config` (Similarity Matching, no labels). `select`: choose the "sola"
    adapter among the identity and the checkpoints of the fitted run (or of a run directory given
    as `adapter`) on held-out videos of `tal_config.data.train_subset` (`sola_store`); an adapter
    file or object is never selected on; `heldout_subset` (never the evaluation subset): measure the
    selection on that subset instead (`sola splice`'s "holdout"); `selection`: overrides of the `select`
    section of `sola.evaluate.probe.ProbeConfig`, e.g. `{"criterion": "head"}` to select by a proxy of this
    head (`sola.evaluate.select_head`) instead of the probe. `adapted_store`: SoLa features already written (then no
    adapter work here; `sola_record`: what made them, e.g. `{"message": ..., "kept_original": True}`, for the
    table). "fitted": the head on the features of the run's last adapter, as fitted (what selection may have
    discarded): `fitted_store` when given, else written to `OUT/fitted_features` (the "sola" features or results
    when they are the same adapter's). `probe_table`: a `sola.evaluate.probe.compare_probe` result to reuse for the
    probe columns, or a function that makes one (run while the heads train when `jobs` > 1). `jobs`: heads trained at once on the CPU, each in its own process with an equal share of
    torch's threads (the small heads use a second core better as a second process than as a second thread); 1
    under torchrun or on a GPU. Control modes ("smooth", "untrained": `sola.experiments.controls.control_store`) are
    judged against the baseline and against "sola"; "untrained" matches the "sola" features' departure
    (so it makes them even when "sola" is not among the modes); `smooth`: `SmoothConfig` fields over
    the adapter's geometry, e.g. `{"kernel": "gaussian"}`. Returns the table as a dict; its
    "sola_adapter" says which adapter made the "sola" features, its "controls" what made the controls'
    features, and its "verdict" (`verdicts`) says, per mode and metric, whether it helps the head.
    """
    out_dir = Path(out_dir)
    shape = None
    if set(modes) & set(CONTROLS):  # the geometry of the controls: the "sola" adapter's
        shape = adapter_shape(adapter if adapted_store is None else None, sola_config)
    if "smooth" in modes:
        SmoothConfig.like(shape, **(smooth or {}))  # bad settings are refused before any work
    out_dir.mkdir(parents=True, exist_ok=True)
    stores = {"original": store}
    used = None
    if {"sola", "untrained", "fitted"} & set(modes):
        if adapted_store is not None:
            stores["sola"] = adapted_store
            used = {"source": str(adapted_store.path), "selected": False, "best": None, "message": None,
                    "features": str(adapted_store.path), **(sola_record or {})}
        else:
            stores["sola"], used = sola_store(store, out_dir, annotations, tal_config, adapter, sola_config,
                                              select, progress, log, heldout_subset, selection)
    controls = {}
    for mode in (m for m in modes if m in CONTROLS):
        stores[mode], controls[mode] = control_store(mode, store, out_dir, shape, stores.get("sola"), smooth,
                                                     (sola_config or SoLaConfig()).fit.seed, progress, log)
    fitted = None
    if "fitted" in modes:
        stores["fitted"], fitted = fitted_features(store, out_dir, used, stores["sola"], fitted_store, progress, log)
    plan = {}  # (mode, seed) -> "saved", "train" or the earlier mode whose heads it repeats
    for index, mode in enumerate(modes):
        same = _same_features(mode, stores, store)
        for seed in range(seeds):
            if result_path(out_dir, mode, seed).is_file():
                plan[mode, seed] = "saved"
            else:
                plan[mode, seed] = same if same in modes[:index] else "train"
    runs = [(mode, seed, stores[mode] if mode in FEATURE_MODES else store)
            for (mode, seed), step in plan.items() if step == "train"]
    probing = {}
    if callable(probe_table) and probe:
        def meanwhile():
            probing["table"] = probe_table()
    else:
        meanwhile = None
    trained = _train_heads(runs, annotations, tal_config, out_dir, jobs, progress, sm_weight, sola_config, log,
                           meanwhile)
    if meanwhile is not None:
        probe_table = probing["table"] if "table" in probing else probe_table()
    results: dict[str, list[dict]] = {}
    for (mode, seed), step in plan.items():
        if step == "saved":
            result = json.loads(result_path(out_dir, mode, seed).read_text())
        elif step == "train":
            result = trained[mode, seed]
        else:
            if seed == 0:
                log(_reuse_line(mode, step))
            result = _reuse(out_dir, step, results[step][seed], mode, seed)
        results.setdefault(mode, []).append(result)
    probes = _probe_rows(stores, annotations, probe_table) if probe else {}
    table = summarise(results, probes, tal_config, sm_weight)
    table["annotations"] = _annotation_source(annotations)
    table["bad_segments"] = (getattr(annotations, "bad_segments", None) or {}).get("policy", "keep")
    if controls:
        table["controls"] = controls
    if used is not None and "sola" in modes:
        table["sola_adapter"] = {key: value for key, value in used.items() if key != "digest"}
    if fitted is not None:
        table["fitted_adapter"] = {key: value for key, value in fitted.items() if key != "digest"}
    table["verdict"] = verdicts(table)
    atomic_write_text(out_dir / TABLE, json_text(json_ready(table), indent=1))
    atomic_write_text(out_dir / "compare.md", format_markdown(table))
    return table


def _train_heads(runs: list[tuple[str, int, FeatureStore]], annotations, tal_config, out_dir: Path, jobs: int,
                 progress: bool, sm_weight: float, sola_config, log,
                 meanwhile: Callable[[], None] | None = None) -> dict[tuple[str, int], dict]:
    """Train and keep the head of each (mode, seed, features) of `runs`: one after another, or `jobs` at once in
    processes of their own on the CPU. The processes are forked where the platform can (the imports are shared, as
    in torch's DataLoader workers, and each sets its torch threads first), else spawned; `meanwhile` then runs
    here, on one torch thread, once they have started (with `jobs` 1 the caller runs it after)."""
    import torch

    from sola.core.devices import resolve_device
    from sola.core.distributed import world_size

    jobs = min(jobs, len(runs))
    if jobs > 1 and (world_size() > 1 or resolve_device(tal_config.train.device).type != "cpu"):
        jobs = 1
    trained = {}
    if jobs <= 1:
        for mode, seed, features in runs:
            log(f"training the head: {mode}, seed {seed}")
            trained[mode, seed] = _run_and_keep(features, annotations, tal_config, out_dir, mode, seed,
                                                progress=None if progress else False,  # None: bars on a terminal
                                                sm_weight=sm_weight, sola_config=sola_config)
        return trained
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, torch.get_num_threads() // jobs)
    log(f"training {len(runs)} heads, {jobs} at once (one process each, {threads} torch thread"
        f"{'s' if threads > 1 else ''}): {', '.join(f'{mode} seed {seed}' for mode, seed, _ in runs)}")
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method), initializer=_job_threads,
                             initargs=(threads,)) as pool:
        futures = {(mode, seed): pool.submit(_run_and_keep, features, annotations, tal_config, out_dir, mode, seed,
                                             progress=False, sm_weight=sm_weight, sola_config=sola_config)
                   for mode, seed, features in runs}
        if meanwhile is not None:  # the workers are forked at the first submit: no thread of ours runs yet
            before = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                meanwhile()
            finally:
                torch.set_num_threads(before)
        return {key: future.result() for key, future in futures.items()}


def _job_threads(threads: int) -> None:
    """In a head-training process of `_train_heads`: its share of torch's threads."""
    import torch

    torch.set_num_threads(threads)


def _run_and_keep(features: FeatureStore, annotations, tal_config, out_dir: Path, mode: str, seed: int,
                  progress, sm_weight: float, sola_config) -> dict:
    """Train and evaluate the head for one (mode, seed); save its result (with per-class AP) and its predictions.

    The head's run goes to a scratch folder in `OUT/results` (its weights are not kept): its
    `predictions.json` is moved to `predictions_path`, then the result is written, last, as the
    mark that this (mode, seed) is done.
    """
    saved = result_path(out_dir, mode, seed)
    saved.parent.mkdir(parents=True, exist_ok=True)
    training = "baseline" if mode in ("baseline", *FEATURE_MODES) else mode
    remove_stale_scratch(saved.parent)
    # one scratch folder per process: under torchrun every rank trains and writes the same outputs
    with tempfile.TemporaryDirectory(prefix=f".{saved.stem}.pid{os.getpid()}.", suffix=".run",
                                     dir=saved.parent) as scratch:
        result = run_experiment(features, annotations, tal_config, seed=seed, out_dir=scratch, progress=progress,
                                mode=training, sm_weight=sm_weight, sola_config=sola_config)
        result.pop("history", None)
        evaluation = read_json(Path(scratch) / EVALUATION, {})
        if "per_class" in evaluation:
            result["per_class"] = evaluation["per_class"]
        if (Path(scratch) / PREDICTIONS).is_file():
            os.replace(Path(scratch) / PREDICTIONS, predictions_path(out_dir, mode, seed))
    atomic_write_text(saved, json_text(result))
    return result


def _same_features(mode: str, stores: dict[str, FeatureStore], store: FeatureStore) -> str | None:
    """The earlier mode whose heads `mode`'s would repeat bitwise (the same features, trained alike), or None:
    "baseline" for a features mode on the original features (a kept identity, a control of departure 0), "sola"
    for "fitted" on the sola features."""
    if mode not in FEATURE_MODES:
        return None
    if stores.get(mode) is store:
        return "baseline"
    if mode == "fitted" and stores.get("fitted") is stores.get("sola"):
        return "sola"
    return None


def _reuse_line(mode: str, same: str) -> str:
    """The log line that says `mode`'s heads are `same`'s."""
    if mode == "sola":
        return ("the original features were kept (selection chose the identity): the sola mode's heads are the "
                "baseline's, not trained again")
    return f"the {mode} features are the {same} mode's: its heads are the {same} mode's, not trained again"


def _reuse(out_dir: Path, same: str, earlier: dict, mode: str, seed: int) -> dict:
    """The result of (`mode`, `seed`) when its features are mode `same`'s: that result and its predictions (same
    features, same seed: a second head would be bitwise the same), saved as `mode`'s."""
    result = {**earlier, "reused_from": same}
    kept = predictions_path(out_dir, same, seed)
    if kept.is_file():
        atomic_write_bytes(predictions_path(out_dir, mode, seed), kept.read_bytes())
    atomic_write_text(result_path(out_dir, mode, seed), json_text(result))
    return result


def fitted_features(store: FeatureStore, out_dir: Path, used: dict, sola: FeatureStore,
                    given: FeatureStore | None = None, progress: bool = True,
                    log: Callable[[str], None] = print) -> tuple[FeatureStore, dict]:
    """The features of the "fitted" mode (the run's last adapter, as fitted) and a record of what made them.

    `used`: the "sola" record (`sola_store`); its "run" names the run whose `adapter.safetensors` is the one as
    fitted. Without a run (an adapter file or object, or features given), "fitted" is "sola". The same adapter
    as "sola"'s gives `sola` itself; another is written to `OUT/fitted_features`. Raises `ConfigError` when `out_dir`
    holds "fitted" results of another adapter.
    """
    if given is not None:
        return given, {"source": str(given.path), "features": str(given.path)}
    run = used.get("run")
    if not run:
        return sola, {"source": used["source"], "features": used["features"], "reused_from": "sola"}
    path = Path(run) / ADAPTER
    adapter = load_adapter(path)
    digest = "identity" if adapter.gate == 0.0 else adapter_digest(adapter)
    if digest == used.get("digest"):
        return sola, {"source": str(path), "features": used["features"], "reused_from": "sola"}
    if digest == "identity":
        return store, {"source": str(path), "features": str(store.path), "reused_from": "baseline"}
    target = out_dir / "fitted_features"
    record = {"source": str(path), "features": str(target), "digest": digest}
    marker = out_dir / FITTED_RECORD
    if marker.is_file() and any((out_dir / RESULTS).glob("fitted_seed*.json")):
        previous = read_json(marker, {})
        if previous.get("digest") != digest:
            raise ConfigError(f"{out_dir}: its fitted features/results were made with another adapter "
                              f"({previous.get('source')}), not {path}; compare in a new --out, or delete {target}, "
                              f"{out_dir / RESULTS}/fitted_seed*.json and {marker}")
    atomic_write_text(marker, json_text(record, indent=1))
    log(f"writing the features of the adapter as fitted ({path}) to {target}")
    transform_store(adapter, store, target, progress=progress)
    return store.open_output(target), record


def remove_stale_scratch(results: Path) -> list[Path]:
    """Remove the scratch folders `.{mode}_seed{seed}.pid{PID}.*.run` in `results` whose process is gone
    (a killed comparison); a live process's folder (another torchrun rank) is left alone. Returns those removed."""
    removed = []
    for folder in results.glob(".*.pid*.run"):
        match = re.search(r"\.pid(\d+)\.", folder.name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _annotation_source(annotations) -> str | None:
    """The resolved path of the annotation file the head was trained and evaluated on (None if unknown)."""
    source = getattr(annotations, "source", "")
    return str(Path(source).resolve()) if source else None


def _probe_rows(stores: dict[str, FeatureStore], annotations, table: dict | None = None) -> dict[str, dict]:
    """Linear-probe metrics per feature set (deterministic: one run each), or those of `table` (its baseline,
    SoLa and any row named after a mode, e.g. "fitted"); the other modes' on the same snippets, read from their
    stores (a store that is another mode's gets that mode's row)."""
    if table is None:
        table = json_ready(compare_probe(stores["original"], annotations, adapted_store=stores.get("sola"), seed=0))
    rows = table["rows"]
    found = {"baseline": rows["baseline"], **({"sola": rows["SoLa"]} if "SoLa" in rows else {})}
    found.update({mode: rows[mode] for mode in FEATURE_MODES if mode in rows and mode in stores})
    named = {id(stores["original"]): "baseline", **({id(stores["sola"]): "sola"} if "sola" in found else {})}
    missing = [mode for mode in FEATURE_MODES if mode in stores and mode not in found]
    data = config = None
    for mode in missing:  # as compare_probe's SoLa row: the same snippets, read from the mode's store
        if id(stores[mode]) in named:
            found[mode] = found[named[id(stores[mode])]]
            continue
        from sola.evaluate.probe import collect_snippets, on_store, probe_config, probe_features

        if data is None:
            config = probe_config(None, 0)
            data = collect_snippets(stores["original"], annotations, config=config)
        on = dataclasses.replace(data, train=on_store(data.train, stores[mode], annotations),
                                 val=on_store(data.val, stores[mode], annotations))
        found[mode] = json_ready(probe_features(on, None, config=config))
    return found
