"""A trained head on disk: `RUN_DIR/{weights.safetensors, config.yaml, classes.json, train_log.json}`.

Runs of unified training also hold `adapter.json` (the shape of the SoLa adapter in front of the head).
`sola tal train` also keeps `train_state.safetensors` there: the resumable state after the last
finished epoch (see `sola.tal.train.train_head(state_dir=...)`).

Weights are the evaluation (EMA) model as safetensors; no pickles are written or read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sola.atomic import atomic_path, atomic_write_text
from sola.config import read_yaml_sections
from sola.errors import CheckpointError, ConfigError
from sola.tal.config import TalConfig, load_tal_config, save_tal_config

WEIGHTS = "weights.safetensors"
TRAIN_STATE = "train_state.safetensors"


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically."""
    atomic_write_text(Path(path), json.dumps(data, indent=1))


def save_run(run_dir: str | os.PathLike, model, config: TalConfig, class_names: list[str],
             history: list[dict[str, float]] | None = None) -> Path:
    """Write weights (safetensors), config, class names and training log into `run_dir`; return it."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_path(run_dir / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "sola-tal-1"})
    save_tal_config(config, run_dir / "config.yaml")
    write_json(run_dir / "classes.json", list(class_names))
    write_json(run_dir / "train_log.json", history or [])
    adapter = getattr(model, "adapter", None)
    if adapter is not None:  # unified training: how to rebuild the adapter in front of the head
        write_json(run_dir / "adapter.json", {"dim": adapter.dim, "hidden_dim": adapter.hidden_dim,
                                              "kernel_size": adapter.kernel_size, "dilation": adapter.dilation})
    elif (run_dir / "adapter.json").exists():
        (run_dir / "adapter.json").unlink()
    return run_dir


def state_mismatch(exc: Exception, limit: int = 300) -> str:
    """The telling part of a `load_state_dict` error on one line: which keys are missing, unexpected or misshapen."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = "; ".join(lines[1:] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else lines)
    return detail if len(detail) <= limit else detail[: limit - 3] + "..."


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


def load_run(run_dir: str | os.PathLike, device: str = "cpu"):
    """Load `(model, config, class_names)` from a run directory; raises `CheckpointError` naming the fix."""
    from safetensors.torch import load_file

    from sola.tal.model import TalModel

    run_dir = Path(run_dir)
    missing = [name for name in (WEIGHTS, "config.yaml", "classes.json") if not (run_dir / name).is_file()]
    if missing:
        raise CheckpointError(f"{run_dir}: not a TAL run directory (missing {', '.join(missing)}); "
                              "train one with `sola tal train`")
    try:
        config = load_tal_config(run_dir / "config.yaml", legacy_overrides(run_dir / "config.yaml"))
    except ConfigError as exc:
        raise CheckpointError(f"{run_dir / 'config.yaml'}: {exc}") from None
    try:
        names = json.loads((run_dir / "classes.json").read_text())
        state = load_file(str(run_dir / WEIGHTS), device=device)
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(f"{run_dir}: cannot read the run ({exc}); retrain with `sola tal train`") from None
    adapter = None
    if (run_dir / "adapter.json").is_file():
        from sola.adapter import SoLaAdapter

        adapter = SoLaAdapter(**json.loads((run_dir / "adapter.json").read_text()))
    model = TalModel(config, adapter=adapter)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{run_dir / WEIGHTS}: weights do not match config.yaml ({state_mismatch(exc)}); "
                              "retrain with `sola tal train` or restore the run's own config.yaml") from None
    return model.to(device).eval(), config, list(names)
