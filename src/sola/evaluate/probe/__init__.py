"""Linear evaluation: how well one linear layer separates action from background snippets.

Two protocols on the same snippets (features L2-normalised per snippet, labels from annotations):

- the reference protocol (SoLa's linear evaluation): `Linear(C -> 2)`, SGD lr 0.01, momentum 0.9,
  batch 256, 16 epochs on the training split; every metric is measured on the validation split
  after each epoch and averaged over epochs 6-15 (0-based: the last ten);
- a probe that converges: class-balanced logistic regression with a little L2, fitted full-batch
  with L-BFGS. The reference protocol underfits small sets (it can predict the majority class
  only), which hides differences between feature sets; this one does not.

Metrics: accuracy, balanced accuracy, average precision of the action class and boundary accuracy
(accuracy on the snippets within +-k of an action/background transition, k=2 by default).
Snippets whose centre lies only in an "Ambiguous" segment are left out. Deterministic on the CPU
for a given seed; the same seed gives the baseline and the adapted features the same
initialisation and the same batches.

`collect_snippets` trains on one subset and measures on another (the `sola probe` report);
`collect_heldout_snippets` splits the videos of ONE subset into a probe-training part and a
held-out part (checkpoint selection, which must never look at the evaluation subset).

Bounded memory: a split is first planned (which snippets of which videos, from the stores' shapes
and the annotations), then read and adapted one video at a time into one matrix of the chosen
snippets. `data.videos` (a share of each split's videos) and `data.chunk` (one random snippet per
chunk of that many, as the reference's one per 100) subsample on request; `data.max_snippets` and
`data.max_bytes` (of each split's float32 matrix: 750 MB, so about 1.5 GB for both whatever the
dimension) cap each split (a seeded uniform draw beyond it, `snippet_cap`). The defaults keep every
snippet of sets up to that cap. Every subsample is seeded and reported.

Every default lives once in `ProbeConfig` (`sola.evaluate.probe.config`, re-exported here; sections `data`,
`sgd`, `lbfgs`, `select`); the functions take `config: ProbeConfig | None` (None: the defaults)
and an explicit `seed` that, when given, replaces `data.seed`.

Modules: `config` (the settings and metric names), `snippets` (planning and subsampling the snippets),
`protocols` (both probes, their metrics, baseline vs adapted features: the only one that needs torch),
`tables` (the text table and JSON output). Importing this package imports `config` only; the other names
load on first access (PEP 562), so the command line can name `ProbeConfig` without importing torch.
"""

from __future__ import annotations

import importlib

from sola.evaluate.probe.config import (CRITERIA, METRICS, SELECTABLE, LbfgsProbeConfig, ProbeConfig, ProbeDataConfig,
                                        ProbeSelectConfig, SgdProbeConfig, probe_config, validate_probe_config)

#: name -> the submodule (of this package) that defines it, imported on first access
_LAZY = {
    **dict.fromkeys(("SnippetSet", "ProbeData", "boundary_mask", "choose_splits", "collect_snippets",
                     "read_snippets", "snippet_cap", "draw_per_chunk", "cap_snippets", "on_store", "split_videos",
                     "selection_subset", "collect_heldout_snippets", "subsample_summary"), "snippets"),
    **dict.fromkeys(("build_matrix", "binary_metrics", "average_precision", "reference_probe", "sgd_epoch",
                     "logistic_probe", "probe_features", "compare_probe"), "protocols"),
    **dict.fromkeys(("format_probe_table", "subsample_note", "json_ready"), "tables"),
}

__all__ = ["CRITERIA", "METRICS", "SELECTABLE", "LbfgsProbeConfig", "ProbeConfig", "ProbeDataConfig",
           "ProbeSelectConfig", "SgdProbeConfig", "probe_config", "validate_probe_config", *_LAZY]


def __getattr__(name: str):
    """The heavy names, imported from their submodule on first access and then cached here."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
