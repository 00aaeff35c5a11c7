"""Small statistics for comparison tables: mean +- std over seeds and paired differences with a 95% interval."""

from __future__ import annotations

import math

import numpy as np

# Two-sided 95% quantiles of Student's t, t_{0.975}(df), df = 1..30 (scipy.stats.t.ppf(0.975, df);
# scipy is not a dependency). Beyond 30 the normal quantile is within 2% of t.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


# A head whose average mAP stays below this (a fraction: 1 point) learned nothing; no verdict is drawn from it.
LEARNED_NOTHING_MAP = 0.01


# A probe whose balanced accuracy stays below this (chance is 0.5) learned nothing; no checkpoint is chosen by it.
PROBE_CHANCE_FLOOR = 0.51


def learned_nothing(means: dict[str, float]) -> str | None:
    """Why no verdict can be drawn when every head in `means` (name -> mean avg mAP, a fraction) stayed below
    `LEARNED_NOTHING_MAP`, else None: "the head learned nothing (avg mAP 0.0% baseline, 0.1% sola, below the
    1-point floor)"; the caller says what follows (no verdict, the identity kept)."""
    if not means or max(means.values()) >= LEARNED_NOTHING_MAP:
        return None
    if len(means) <= 3:
        shown = ", ".join(f"{100 * value:.1f}% {name}" for name, value in means.items())
    else:
        shown = f"at most {100 * max(means.values()):.1f}% over {len(means)} candidates"
    return f"the head learned nothing (avg mAP {shown}, below the {100 * LEARNED_NOTHING_MAP:.0f}-point floor)"


def t_quantile_975(df: int) -> float:
    """t_{0.975} with `df` degrees of freedom (>= 1); the normal 1.960 beyond the table."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 1.960


def mean_std(values) -> dict[str, float]:
    """`{"mean", "std", "n"}` of `values` (population std, as the tables have always shown; n=1: std NaN)."""
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std()) if len(values) > 1 else math.nan,
            "n": int(len(values))}


def paired_difference(treated, control) -> dict[str, float]:
    """Mean paired difference `treated - control` (same seeds), its sample std and 95% t-interval.

    Returns `{"mean", "std", "n", "low", "high"}`; with one pair the interval is NaN.
    """
    diff = np.asarray(treated, dtype=np.float64) - np.asarray(control, dtype=np.float64)
    n = len(diff)
    mean = float(diff.mean())
    if n < 2:
        return {"mean": mean, "std": math.nan, "n": n, "low": math.nan, "high": math.nan}
    std = float(diff.std(ddof=1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "n": n, "low": mean - half, "high": mean + half}


def format_mean_std(summary: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    """`"51.3 ± 2.0"`, or `"51.3 (n=1)"` for one value."""
    if summary["n"] < 2 or math.isnan(summary["std"]):
        return f"{scale * summary['mean']:.{digits}f} (n=1)"
    return f"{scale * summary['mean']:.{digits}f} ± {scale * summary['std']:.{digits}f}"


def format_difference(summary: dict[str, float], scale: float = 100.0, digits: int = 1) -> str:
    """`"+1.2 [-0.3, +2.7]"`: the mean paired difference and its 95% interval (n=1: no interval)."""
    if summary["n"] < 2:
        return f"{scale * summary['mean']:+.{digits}f} (n=1)"
    return (f"{scale * summary['mean']:+.{digits}f} "
            f"[{scale * summary['low']:+.{digits}f}, {scale * summary['high']:+.{digits}f}]")


def verdict(difference: dict[str, float], name: str = "SoLa", scale: float = 100.0, digits: int = 1) -> str:
    """One plain line from a paired difference (`paired_difference`, treated - control, 0-1 units).

    "SoLa helps: +1.2 [+0.3, +2.1] (3 pairs)" when the 95% interval lies above 0, "SoLa hurts: ..."
    when it lies below, "no measurable difference: ..." when it spans 0, and with one pair "one seed
    cannot tell: ..." (no interval).
    """
    n = int(difference["n"])
    if n < 2:
        return (f"one seed cannot tell: {name} {scale * difference['mean']:+.{digits}f} (n=1, no interval); "
                "rerun with 3 or more seeds")
    shown = f"{format_difference(difference, scale, digits)} ({n} pairs)"
    low, high = difference["low"], difference["high"]
    if low > 0:
        return f"{name} helps: {shown}"
    if high < 0:
        return f"{name} hurts: {shown}"
    return f"no measurable difference: {shown}"
