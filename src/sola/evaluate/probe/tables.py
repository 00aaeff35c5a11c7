"""The probe's report: the fixed-width table of a `compare_probe` result, its caption words (protocol,
epochs, subsample and cap) and strict-JSON output (`json_ready`). No torch.
"""

from __future__ import annotations

import math

from sola.core.atomic import json_ready as strict_json_ready
from sola.evaluate.probe.config import METRICS, SgdProbeConfig


def format_probe_table(table: dict) -> str:
    """A fixed-width text table of `compare_probe` output (percentages)."""
    columns = [(f"{p}_{m}", f"{p} {short}") for p in ("sgd", "lbfgs")
               for m, short in zip(METRICS, ("acc", "bal.acc", "AP", f"bnd±{table['boundary_k']}"))]
    name_width = max(len(name) for name in table["rows"]) + 2
    header = " " * name_width + "".join(f"{title:>14}" for _, title in columns)
    if table.get("holdout"):
        where = (f"train on {table['train_videos']} videos of {table['train_subset']}, measure on the other "
                 f"{table['val_videos']} (held out: {table['holdout']:g}, seed {table.get('seed', 0)})")
    else:
        where = (f"train {table['train_subset']} ({table['train_videos']} videos), "
                 f"measure {table['val_subset']} ({table['val_videos']} videos)")
    sgd = SgdProbeConfig(**table.get("config", {}).get("sgd", {}))  # tables written before the config: defaults
    epochs = (f"mean of epochs {sgd.report_from}-{sgd.epochs - 1}" if sgd.report_from < sgd.epochs
              else f"epoch {sgd.epochs - 1}")
    lines = [
        f"linear probe: {where}; sgd = reference protocol ({epochs}), lbfgs = converged "
        "class-balanced logistic regression",
        header,
    ]
    for name, row in table["rows"].items():
        lines.append(f"{name:<{name_width}}" + "".join(_percent(row[key]) for key, _ in columns))
    note = subsample_note(table.get("subsample"), table.get("seed", 0))
    return "\n".join(lines + ([note] if note else []))


def subsample_note(subsample: dict | None, seed: int) -> str:
    """One line saying how much of each split a subsampled probe saw ("" when it saw everything)."""
    if not subsample or all(part["snippets"] == part["snippets_available"] and part["videos"] == part["videos_available"]
                            for part in subsample.values()):
        return ""
    parts = [f"{name} {part['snippets']:,} of {part['snippets_available']:,} snippets in {part['videos']:,} of "
             f"{part['videos_available']:,} videos" + _cap_words(part) for name, part in subsample.items()]
    return (f"subsampled (seed {seed}; data.videos, data.chunk, data.max_snippets, data.max_bytes): "
            f"{'; '.join(parts)}")


def _cap_words(part: dict) -> str:
    """" (capped at N)" when the split's cap removed snippets (tables before the cap was recorded: "")."""
    cap = part.get("cap") or 0
    return f" (capped at {cap:,})" if cap and part["snippets"] == cap < part["snippets_available"] else ""


def _percent(value) -> str:
    return f"{'n/a':>14}" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:>14.2f}"


def json_ready(value):
    """A copy of nested dicts/lists with non-finite floats (NaN, +-Inf) as None, for strict JSON
    (`sola.core.atomic.json_ready`, the one rule of every JSON file sola writes)."""
    return strict_json_ready(value)
