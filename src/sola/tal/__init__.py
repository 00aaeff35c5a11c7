"""Built-in temporal action localization head (ActionFormer family) and the paper's experiment.

Pipeline: items (one dict per video, see `sola.tal.data`) -> `train_head` -> `predict_items` ->
ActivityNet-format predictions -> `sola.evaluate.metrics`. `run_experiment(store, annotations, config)`
does all of it on a feature store and returns mAP and seconds per epoch.
"""

from __future__ import annotations

_EXPORTS = {
    "TalConfig": "sola.tal.config",
    "load_tal_config": "sola.tal.config",
    "save_tal_config": "sola.tal.config",
    "TalModel": "sola.tal.model",
    "train_head": "sola.tal.train",
    "TrainResult": "sola.tal.train",
    "predict_items": "sola.tal.infer",
    "to_activitynet": "sola.tal.infer",
    "make_item": "sola.tal.data",
    "build_items": "sola.tal.experiment",
    "run_experiment": "sola.tal.experiment",
    "evaluate_predictions": "sola.tal.evaluation",
    "class_names": "sola.tal.experiment",
    "fit_config_to_data": "sola.tal.experiment",
    "unified_parts": "sola.tal.unified",
    "TRAINING_MODES": "sola.tal.config",
    "save_run": "sola.tal.run",
    "load_run": "sola.tal.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    # Lazy so that importing `sola.tal` does not import torch until a name is used.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sola.tal' has no attribute {name!r}")
