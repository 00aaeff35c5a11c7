"""A trained head on disk: `RUN_DIR/{weights.safetensors, config.yaml, classes.json, metrics.jsonl, features.json}`.

File names and the safetensors reader/writer come from `sola.core.runs` (shared with the adapter fit).
Runs of unified training also hold `adapter.json` (the shape of the SoLa adapter in front of the
head). `sola tal train` also keeps `state.safetensors` there: the resumable state after the last
finished epoch (see `sola.tal.train.train_head(state_dir=...)`).

Weights are the evaluation (EMA) model as safetensors; no pickles are written or read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sola.core.config import read_yaml_sections
from sola.core.errors import CheckpointError, ConfigError
from sola.core.runs import (ADAPTER_SHAPE, CLASSES, CONFIG, HEAD_RUN, HEAD_SECTIONS, STATE, WEIGHTS, check_run,
                            read_json, read_safetensors, run_config_file, run_kind, state_mismatch, write_json,
                            write_metrics, write_safetensors)
from sola.tal.config import TalConfig, load_tal_config, save_tal_config
from sola.tal.features import write_features

WEIGHTS_FORMAT = "sola-tal-1"


def save_run(run_dir: str | os.PathLike, model, config: TalConfig, class_names: list[str],
             history: list[dict[str, float]] | None = None, features: dict | None = None) -> Path:
    """Write weights (safetensors), config, class names and the metrics log into `run_dir`; return it.

    `features`: what the head was trained on (`sola.tal.features.features_record`), kept as
    `features.json` so that `sola detect` can check its inputs.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    write_safetensors(run_dir / WEIGHTS, state, {"format": WEIGHTS_FORMAT})
    save_tal_config(config, run_dir / CONFIG)
    write_json(run_dir / CLASSES, list(class_names))
    write_metrics(run_dir, history or [])
    if features is not None:
        write_features(run_dir, features)
    adapter = getattr(model, "adapter", None)
    if adapter is not None:  # unified training: how to rebuild the adapter in front of the head
        write_json(run_dir / ADAPTER_SHAPE, adapter.shape)
    elif (run_dir / ADAPTER_SHAPE).exists():
        (run_dir / ADAPTER_SHAPE).unlink()
    return run_dir


def legacy_overrides(config_path: str | os.PathLike) -> dict[str, Any]:
    """Settings a run's `config.yaml` implies by leaving out keys added after it was written.

    `config.yaml` holds every key of its time, so a missing `model.layer_scale_init` means a run of a
    head without residual-branch scales: it is rebuilt without them (0.0), and its weights load.
    """
    try:
        model = read_yaml_sections(config_path).get("model")
    except ConfigError:
        return {}  # load_tal_config reports it
    if isinstance(model, dict) and "layer_scale_init" not in model:
        return {"model.layer_scale_init": 0.0}
    return {}


def run_config(path: str | os.PathLike) -> tuple[TalConfig | None, list[str] | None]:
    """`(config, class names)` of a TAL run directory, or `(None, None)` when `path` is no run folder.

    Raises `CheckpointError` for a run of another kind (a `sola train` folder) and for an unreadable
    `config.yaml` or `classes.json`, naming the file.
    """
    path = Path(path)
    if run_kind(path) is None or not (path / CONFIG).exists():
        return None, None
    check_run(path, HEAD_RUN)
    names = read_json(path / CLASSES, None, list, fix="retrain with `sola tal train`")
    config_file = run_config_file(path, HEAD_SECTIONS, "retrain with `sola tal train`")
    try:
        return load_tal_config(config_file, legacy_overrides(config_file)), names
    except ConfigError as exc:
        text = str(exc)
        raise CheckpointError(text if str(path / CONFIG) in text else f"{path / CONFIG}: {text}") from None


def check_resume(run_dir: str | os.PathLike, resume: bool) -> None:
    """Refuse to overwrite a TAL run without `resume`, or to resume a finished run that kept no state.

    Raises `CheckpointError` naming the fix.
    """
    run_dir = check_run(run_dir, HEAD_RUN, allow_new=True)
    has_state, has_weights = (run_dir / STATE).is_file(), (run_dir / WEIGHTS).is_file()
    if (has_state or has_weights) and not resume:
        raise CheckpointError(f"{run_dir}: already holds a TAL run; pass --resume to continue it, or choose another --out")
    if has_weights and not has_state:
        raise CheckpointError(f"{run_dir}: a finished run without {STATE} (nothing to resume); choose another --out")


def resumed_config(run_dir: str | os.PathLike, config_file: str | os.PathLike | None, overrides: dict[str, Any],
                   resume: bool) -> TalConfig:
    """The config a `sola tal train` command trains with: `config_file` under `overrides`, or on `--resume`
    without `--config` the run's own `config.yaml` under them (the saved state then checks that nothing
    but the device changed, see `sola.tal.train.run_fingerprint`). Raises `ConfigError`, `CheckpointError`."""
    run_dir = Path(run_dir)
    if resume and config_file is None and (run_dir / CONFIG).exists():
        stored = run_config_file(run_dir, HEAD_SECTIONS, "retrain with `sola tal train`")
        return load_tal_config(stored, {**legacy_overrides(stored), **overrides})
    return load_tal_config(config_file, overrides)


def load_run(run_dir: str | os.PathLike, device: str = "cpu"):
    """Load `(model, config, class_names)` from a run directory; raises `CheckpointError` naming the fix."""
    from sola.adapt.adapter import SoLaAdapter  # torch: only here, so that reading a run's config stays light
    from sola.tal.model import TalModel

    run_dir = check_run(run_dir, HEAD_RUN)
    missing = [name for name in (WEIGHTS, CONFIG, CLASSES) if not (run_dir / name).exists()]
    if missing:
        raise CheckpointError(f"{run_dir}: a head run without {', '.join(missing)} (killed before it finished?); "
                              "train it to the end with `sola tal train --resume`")
    config, names = run_config(run_dir)
    names = [str(name) for name in names]
    state, _ = read_safetensors(run_dir / WEIGHTS, WEIGHTS_FORMAT, "TAL head's weights",
                                "retrain with `sola tal train`")
    adapter = None
    shape = read_json(run_dir / ADAPTER_SHAPE, None, dict, fix="retrain with `sola tal train`")
    if shape is not None:
        try:
            adapter = SoLaAdapter(**{key: int(value) for key, value in shape.items()})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{run_dir / ADAPTER_SHAPE}: not an adapter shape ({exc}); "
                                  "retrain with `sola tal train`") from None
    model = TalModel(config, adapter=adapter)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{run_dir / WEIGHTS}: weights do not match config.yaml ({state_mismatch(exc)}); "
                              "retrain with `sola tal train` or restore the run's own config.yaml") from None
    return model.to(device).eval(), config, names
