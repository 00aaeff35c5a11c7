"""Pictures and tables of a detector's predictions: AP per class, mAP against tIoU, precision-recall,
DETAD's false-positive breakdown, and timelines of the worst (or chosen) videos.

`show_predictions` writes them all, with `show.json` (the numbers) and `show.md` (the error table),
into one directory; each figure is also a small function of computed data and an output path. PNGs
are written atomically (matplotlib's Agg backend), as `sola.viz.plots` does.

"Worst" videos, for the timelines: among the videos with ground truth, the lowest recall at tIoU 0.5
(matched ground truth / ground truth, with the evaluator's matching over the predictions scoring at
least `min_score`), then the most false positives, then the video id.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from sola.core.atomic import atomic_path, atomic_write_text
from sola.core.errors import PredictionError
from sola.evaluate.metrics import ACTIVITYNET_TIOU, DetectionResult, Segments, evaluate_detection
from sola.evaluate.metrics.errors import (CATEGORIES, ERROR_TYPES, TOP_K, FalsePositiveAnalysis,
                                          false_positive_analysis, true_positive_flags)
from sola.viz.plots import class_colors, timeline_figure

# One colour per DETAD category, true positive first (CATEGORIES order).
CATEGORY_COLORS = ("tab:green", "tab:olive", "tab:blue", "tab:orange", "tab:red", "tab:gray")
FIGURES = {
    "ap_per_class": "ap_per_class.png",
    "map_tiou": "map_tiou.png",
    "precision_recall": "precision_recall.png",
    "errors": "errors.png",
}
TIMELINES = "timelines"
PIE_LABEL_MIN = 10.0  # percent: narrower wedges of the error pie are labelled in its legend only
_TIMELINE_NAME = re.compile(r"\d{2,}_[A-Za-z0-9._-]+\.png")  # what `show_predictions` names a timeline


# -- numbers ------------------------------------------------------------------------------------
def precision_recall_curves(ground_truth: Segments, predictions: Segments, tiou: float = 0.5) -> dict[str, tuple]:
    """Per ground-truth class: `(recall, precision)`, each (n,) over its n predictions in decreasing score.

    The evaluator's matching at one tIoU; a class without predictions gets two empty arrays.
    Raises `PredictionError` for predictions without scores.
    """
    flags = true_positive_flags(ground_truth, predictions, [tiou])[0]
    classes, num_gt = np.unique(ground_truth.label, return_counts=True)
    curves = {}
    for name, count in zip(classes.tolist(), num_gt):
        mine = np.flatnonzero(predictions.label == name)
        mine = mine[np.argsort(-predictions.score[mine], kind="stable")]
        hits = np.cumsum(flags[mine])
        curves[name] = (hits / count, hits / np.arange(1, len(mine) + 1))
    return curves


def mean_precision_curve(curves: dict[str, tuple], points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """`(recall, precision)` (points,): the class mean of interpolated precision (the best precision at
    recall >= r, 0 where a class never reaches r) on an even recall grid."""
    grid = np.linspace(0.0, 1.0, points)
    total = np.zeros(points)
    for recall, precision in curves.values():
        if not len(recall):
            continue
        envelope = np.maximum.accumulate(precision[::-1])[::-1]
        index = np.searchsorted(recall, grid - 1e-12, side="left")
        reached = index < len(recall)
        total[reached] += envelope[index[reached]]
    return grid, total / max(len(curves), 1)


def rank_videos(ground_truth: Segments, predictions: Segments, tiou: float = 0.5, min_score: float = 0.0) -> list[dict]:
    """Every video of the ground truth, worst first (lowest recall, then most false positives, then id).

    Each row: `video`, `num_ground_truth`, `true_positives`, `false_positives` (predictions scoring at
    least `min_score`, matched at `tiou`), `recall`.
    """
    kept = predictions.select(predictions.score >= min_score) if predictions.score is not None else predictions
    flags = true_positive_flags(ground_truth, kept, [tiou])[0]
    videos, gt_code = np.unique(ground_truth.video, return_inverse=True)
    position = np.minimum(np.searchsorted(videos, kept.video), len(videos) - 1)
    known = videos[position] == kept.video
    num_gt = np.bincount(gt_code, minlength=len(videos))
    hits = np.bincount(position[known & flags], minlength=len(videos))
    misses = np.bincount(position[known & ~flags], minlength=len(videos))
    recall = hits / num_gt
    order = np.lexsort((videos, -misses, recall))
    return [{"video": str(videos[i]), "num_ground_truth": int(num_gt[i]), "true_positives": int(hits[i]),
             "false_positives": int(misses[i]), "recall": float(recall[i])} for i in order]


# -- figures ------------------------------------------------------------------------------------
def ap_figure(result: DetectionResult, out: str | os.PathLike) -> Path:
    """Write a PNG of each class's AP averaged over the thresholds (%), best first, with the mAP as a line."""
    plt = _pyplot()
    average = result.ap.mean(axis=0) * 100  # (K,)
    order = np.argsort(-average, kind="stable")
    height = 1.2 + 0.24 * len(order)
    fig, ax = plt.subplots(figsize=(7.5, height))
    rows = np.arange(len(order))
    ax.barh(rows, average[order], color="tab:blue", height=0.75)
    ax.set_yticks(rows, [result.classes[k] for k in order], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(result.average_mAP * 100, color="black", linestyle="--", linewidth=1,
               label=f"average mAP {100 * result.average_mAP:.2f}")
    for row, value in zip(rows, average[order]):
        ax.text(value + 0.5, row, f"{value:.1f}", va="center", fontsize=7)
    ax.set_xlim(0, max(100.0 if average.max(initial=0) > 60 else 1.15 * average.max(initial=1), 1.0))
    ax.set_xlabel(f"AP (%), averaged over tIoU {_thresholds_text(result.tiou_thresholds)}")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("AP per class")
    return _save(fig, out)


def map_figure(result: DetectionResult, out: str | os.PathLike) -> Path:
    """Write a PNG of mAP (%) against the tIoU threshold, with the average mAP as a dashed line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.tiou_thresholds, result.mAP * 100, marker="o", color="tab:blue")
    for threshold, value in zip(result.tiou_thresholds, result.mAP * 100):
        ax.annotate(f"{value:.1f}", (threshold, value), textcoords="offset points", xytext=(0, 6), ha="center",
                    fontsize=7)
    ax.axhline(result.average_mAP * 100, color="black", linestyle="--", linewidth=1,
               label=f"average {100 * result.average_mAP:.2f}")
    ax.set_xlabel("tIoU threshold")
    ax.set_ylabel("mAP (%)")
    ax.set_ylim(0, max(5.0, 1.15 * float(result.mAP.max(initial=0)) * 100))
    ax.grid(True, linestyle=":")
    ax.legend(fontsize=8)
    ax.set_title("mAP against tIoU")
    return _save(fig, out)


def precision_recall_figure(curves: dict[str, tuple], ap: dict[str, float], out: str | os.PathLike,
                            tiou: float = 0.5, highlight: int = 3) -> Path:
    """Write a PNG of precision against recall at one tIoU: the `highlight` best and worst classes by
    `ap` (label -> AP, fraction) in colour, the others in grey, and the class mean in black."""
    plt = _pyplot()
    names = sorted(curves, key=lambda n: -ap.get(n, 0.0))
    shown = names if len(names) <= 2 * highlight else names[:highlight] + names[-highlight:]
    palette = [f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink", "olive", "cyan")]
    colors = {name: palette[i % len(palette)] for i, name in enumerate(shown)}  # no grey: grey is the rest
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for name in names:
        recall, precision = curves[name]
        if name in shown or not len(recall):
            continue
        ax.step(recall, precision, where="post", color="lightgrey", linewidth=0.7)
    for name in shown:
        recall, precision = curves[name]
        if not len(recall):  # a class with ground truth but no prediction: AP 0, no curve to draw
            ax.plot([], [], color=colors[name], linewidth=1.4, label=f"{name} (no predictions, AP 0.0)")
            continue
        ax.step(np.concatenate([[0.0], recall]), np.concatenate([precision[:1], precision]), where="post",
                color=colors[name], linewidth=1.4, label=f"{name} (AP {100 * ap.get(name, 0.0):.1f})")
    grid, mean = mean_precision_curve(curves)
    ax.plot(grid, mean, color="black", linewidth=2, label=f"class mean (mAP {100 * np.mean(list(ap.values())):.1f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(True, linestyle=":")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    hidden = len(names) - len(shown)
    ax.set_title(f"precision-recall at tIoU {tiou:g}" + (f" ({hidden} classes in grey)" if hidden else ""))
    return _save(fig, out)


def error_figure(analysis: FalsePositiveAnalysis, out: str | os.PathLike) -> Path:
    """Write a PNG of DETAD's false-positive analysis: the profile of the top 1G..kG predictions
    (stacked shares of each category), the breakdown of the false positives (`fractions`, a pie) and
    the average-mAP gain of removing each error type (`map_gain`, in points)."""
    plt = _pyplot()
    fig, (profile_ax, pie_ax, gain_ax) = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [3, 2, 2]})
    bins = np.arange(analysis.top_k)
    bottom = np.zeros(analysis.top_k)
    for code, name in enumerate(CATEGORIES):
        share = analysis.profile[:, code] * 100
        profile_ax.bar(bins, share, bottom=bottom, color=CATEGORY_COLORS[code], label=name, width=0.85)
        bottom += share
    profile_ax.set_xticks(bins, [f"{i + 1}G" for i in bins])
    profile_ax.set_ylim(0, 100)
    profile_ax.set_xlabel("predictions ranked (i-1)G..iG within their class")
    profile_ax.set_ylabel("share (%)")
    profile_ax.set_title("false-positive profile")
    profile_ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=3, fontsize=8, frameon=False)

    shares = np.array([analysis.fractions[name] for name in ERROR_TYPES])
    if shares.sum() > 0:
        present = shares > 0
        # Names and every share in a legend below; inside the pie only the shares of wide wedges, so
        # that small neighbouring slices never stack their labels on one another.
        wedges, _, _ = pie_ax.pie(shares[present], colors=[c for c, p in zip(CATEGORY_COLORS[1:], present) if p],
                                  autopct=lambda pct: f"{pct:.1f}%" if pct >= PIE_LABEL_MIN else "",
                                  pctdistance=0.68, startangle=90, counterclock=False, textprops={"fontsize": 8})
        total = float(shares.sum())
        pie_ax.legend(wedges, [f"{n} {100 * v / total:.1f}%" for n, v in zip(ERROR_TYPES, shares) if v > 0],
                      loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=8, frameon=False)
    else:
        pie_ax.text(0.5, 0.5, "no false positives", ha="center", va="center")
        pie_ax.set_axis_off()
    pie_ax.set_title(f"false positives of the top {analysis.top_k}G")

    gains = np.array([analysis.map_gain[name] for name in ERROR_TYPES]) * 100
    rows = np.arange(len(ERROR_TYPES))
    gain_ax.bar(rows, gains, color=CATEGORY_COLORS[1:])
    for row, value in zip(rows, gains):
        gain_ax.text(row, value, f"{value:.2f}", ha="center", va="bottom", fontsize=8)
    gain_ax.set_xticks(rows, list(ERROR_TYPES), fontsize=8, rotation=30, ha="right")
    gain_ax.set_ylim(0, max(1.0, 1.2 * float(gains.max(initial=0))))
    gain_ax.set_ylabel("average-mAP gain (points)")
    gain_ax.set_title(f"removing each error (average mAP {100 * analysis.average_mAP:.2f})")
    fig.suptitle(f"DETAD false-positive analysis, tIoU {_thresholds_text(analysis.tiou_thresholds)}", fontsize=11)
    return _save(fig, out)


def video_timeline(predictions: Segments, ground_truth: Segments, video: str, out: str | os.PathLike,
                   duration: float | None = None, min_score: float = 0.0, title: str | None = None,
                   colors: dict | None = None) -> Path:
    """Write the `sola.viz.plots.timeline_figure` PNG of one video (seconds); `duration` NaN or None: the
    last segment's end."""
    mine = np.flatnonzero(predictions.video == video)
    truth = np.flatnonzero(ground_truth.video == video)
    detections = [(float(predictions.start[i]), float(predictions.end[i]), str(predictions.label[i]),
                   float(predictions.score[i])) for i in mine]
    segments = [(float(ground_truth.start[i]), float(ground_truth.end[i]), str(ground_truth.label[i])) for i in truth]
    if duration is None or not math.isfinite(duration):
        duration = max([end for _, end, *_ in detections + segments] + [1.0])
    return timeline_figure(out, duration, detections, segments, title=title or video, min_score=min_score,
                           colors=colors)


# -- everything at once ---------------------------------------------------------------------------
def show_predictions(
    predictions: Segments,
    ground_truth: Segments,
    out_dir: str | os.PathLike,
    tiou_thresholds=ACTIVITYNET_TIOU,
    videos: list[str] | None = None,
    worst: int = 5,
    min_score: float = 0.0,
    durations: dict[str, float] | None = None,
    top_k: int = TOP_K,
    pr_tiou: float = 0.5,
    coverage=None,
) -> dict:
    """Write every figure, `show.json` and `show.md` of `predictions` against `ground_truth` into `out_dir`.

    mAP and the DETAD analysis use every prediction at `tiou_thresholds`; precision-recall and the
    worst-video ranking use `pr_tiou`. Timelines: `videos` (ids of the ground truth or the
    predictions), else the `worst` worst videos (module docstring), drawn from predictions scoring at
    least `min_score`; `durations`: video -> seconds; `coverage`: the `Coverage` of `ground_truth` (what the numbers
    were scored on), kept in show.json and show.md. Timelines of an earlier call into the same
    `out_dir` that this one does not draw are removed. Returns `{"out_dir", "figures": {name: Path},
    "timelines": {video: Path}, "json", "markdown", "detection": DetectionResult, "analysis":
    FalsePositiveAnalysis, "videos": [ranking rows]}`. Raises `PredictionError` for unknown `videos`,
    empty ground truth or unscored predictions.
    """
    out_dir = Path(out_dir)
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    result = evaluate_detection(ground_truth, predictions, thresholds)
    result.coverage = coverage
    analysis = false_positive_analysis(ground_truth, predictions, thresholds, top_k=top_k)
    ranking = rank_videos(ground_truth, predictions, pr_tiou, min_score)
    chosen = _chosen_videos(videos, ranking, ground_truth, predictions, worst)

    figures = {
        "ap_per_class": ap_figure(result, out_dir / FIGURES["ap_per_class"]),
        "map_tiou": map_figure(result, out_dir / FIGURES["map_tiou"]),
    }
    curves = precision_recall_curves(ground_truth, predictions, pr_tiou)
    at_pr = evaluate_detection(ground_truth, predictions, [pr_tiou]) if pr_tiou not in thresholds else result
    column = int(np.flatnonzero(at_pr.tiou_thresholds == pr_tiou)[0])
    ap_at_pr = {name: float(at_pr.ap[column, k]) for k, name in enumerate(at_pr.classes)}
    figures["precision_recall"] = precision_recall_figure(curves, ap_at_pr, out_dir / FIGURES["precision_recall"],
                                                          pr_tiou)
    figures["errors"] = error_figure(analysis, out_dir / FIGURES["errors"])

    rows = {row["video"]: row for row in ranking}
    colors = class_colors(np.concatenate([ground_truth.label, predictions.label]).tolist())
    timelines, drawn = {}, []
    for index, video in enumerate(chosen):
        row = rows.get(video) or _row_without_ground_truth(video, predictions, min_score)
        recall = "no ground truth" if row["recall"] is None else f"recall {row['recall']:.2f} at tIoU {pr_tiou:g}"
        title = f"{video}: {recall}, {row['false_positives']} false positives"
        path = out_dir / TIMELINES / f"{index + 1:02d}_{_safe_name(video)}.png"
        timelines[video] = video_timeline(predictions, ground_truth, video, path, (durations or {}).get(video),
                                          min_score, title, colors)
        drawn.append({**row, "path": str(path.relative_to(out_dir))})
    remove_stale_timelines(out_dir / TIMELINES, set(timelines.values()))

    summary = {
        "detection": result.to_dict(),
        "precision_recall_tiou": float(pr_tiou),
        "AP_at_precision_recall_tiou": ap_at_pr,
        "false_positive_analysis": analysis.to_dict(),
        "timelines": {"min_score": float(min_score), "chosen": "given" if videos else f"worst {worst}",
                      "videos": drawn},
        "figures": {name: str(path.relative_to(out_dir)) for name, path in figures.items()},
    }
    json_path, markdown_path = out_dir / "show.json", out_dir / "show.md"
    atomic_write_text(json_path, json.dumps(summary, indent=1) + "\n")
    atomic_write_text(markdown_path, show_markdown(result, analysis, figures, timelines, out_dir))
    return {"out_dir": out_dir, "figures": figures, "timelines": timelines, "json": json_path,
            "markdown": markdown_path, "detection": result, "analysis": analysis, "videos": ranking}


# -- tables -------------------------------------------------------------------------------------
def format_error_table(analysis: FalsePositiveAnalysis) -> str:
    """The error analysis for a terminal: one row per error type (share of false positives %, count
    summed over thresholds, average-mAP gain in points)."""
    width = max(len(name) for name in ERROR_TYPES)
    lines = [
        f"false positives of each class's top {analysis.top_k}G predictions ({analysis.num_predictions}; DETAD), "
        f"tIoU {_thresholds_text(analysis.tiou_thresholds)}; average mAP {100 * analysis.average_mAP:.2f}",
        f"{'error type':<{width}}  {'share (%)':>9}  {'count':>7}  {'mAP gain':>8}",
    ]
    for name in ERROR_TYPES:
        lines.append(f"{name:<{width}}  {100 * analysis.fractions[name]:9.1f}  {analysis.counts[name]:7d}  "
                     f"{100 * analysis.map_gain[name]:+8.2f}")
    return "\n".join(lines)


def show_markdown(result: DetectionResult, analysis: FalsePositiveAnalysis, figures: dict[str, Path],
                  timelines: dict[str, Path], out_dir: Path) -> str:
    """`show.md`: the mAP per threshold, the error-analysis table (type, fraction, mAP gain) and the figures."""
    lines = [
        "# Predictions at a glance",
        "",
        f"Average mAP **{100 * result.average_mAP:.2f}** over tIoU {_thresholds_text(result.tiou_thresholds)} "
        f"({len(result.classes)} classes, {int(result.num_ground_truth.sum())} ground-truth segments, "
        f"{int(result.num_predictions.sum())} predictions)"
        + (f"; {result.coverage.line()}." if result.coverage is not None else "."),
        "",
        "| tIoU | " + " | ".join(f"{t:g}" for t in result.tiou_thresholds) + " | avg |",
        "|---|" + "---:|" * (len(result.tiou_thresholds) + 1),
        "| mAP (%) | " + " | ".join(f"{100 * v:.2f}" for v in result.mAP) + f" | {100 * result.average_mAP:.2f} |",
        "",
        "## False positives (DETAD)",
        "",
        f"Each class's top {analysis.top_k}G predictions ({analysis.num_predictions}), G its ground-truth "
        f"instances; average mAP of these {100 * analysis.average_mAP:.2f}. Share: of the false positives, "
        "counted at every threshold. mAP gain: average-mAP points gained by removing that type.",
        "",
        "| error type | fraction (%) | count | average-mAP gain (points) |",
        "|---|---:|---:|---:|",
    ]
    for name in ERROR_TYPES:
        lines.append(f"| {name} | {100 * analysis.fractions[name]:.1f} | {analysis.counts[name]} | "
                     f"{100 * analysis.map_gain[name]:+.2f} |")
    lines += ["", "## Figures", ""]
    for name, path in figures.items():
        lines += [f"![{name}]({path.relative_to(out_dir)})", ""]
    if timelines:
        lines += ["## Timelines", ""]
        lines += [f"- [{video}]({path.relative_to(out_dir)})" for video, path in timelines.items()]
    return "\n".join(lines) + "\n"


# -- helpers ------------------------------------------------------------------------------------
def _chosen_videos(videos, ranking, ground_truth: Segments, predictions: Segments, worst: int) -> list[str]:
    if not videos:
        return [row["video"] for row in ranking[: max(int(worst), 0)]]
    return check_videos(videos, ground_truth, predictions)


def check_videos(videos: list[str], ground_truth: Segments, predictions: Segments) -> list[str]:
    """`videos` without repeats; raises `PredictionError` naming those in neither side."""
    known = set(ground_truth.video.tolist()) | set(predictions.video.tolist())
    unknown = [v for v in videos if v not in known]
    if unknown:
        example = ", ".join(sorted(known)[:3])
        raise PredictionError(f"video(s) {', '.join(map(repr, unknown[:5]))} are in neither the ground truth nor the "
                              f"predictions (e.g. {example}); check the ids given to --videos")
    return list(dict.fromkeys(videos))


def remove_stale_timelines(folder: Path, kept: set[Path]) -> list[Path]:
    """Remove the timelines an earlier `sola show` drew into `folder` (`NN_<video>.png`) that are not in
    `kept`; other files stay. Returns the removed paths."""
    stale = [path for path in folder.glob("*.png") if _TIMELINE_NAME.fullmatch(path.name) and path not in kept]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def _row_without_ground_truth(video: str, predictions: Segments, min_score: float) -> dict:
    count = int(((predictions.video == video) & (predictions.score >= min_score)).sum())
    return {"video": video, "num_ground_truth": 0, "true_positives": 0, "false_positives": count, "recall": None}


def _safe_name(video: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", video)[:120] or "video"


def _thresholds_text(thresholds) -> str:
    values = [float(t) for t in thresholds]
    if len(values) > 2 and np.allclose(np.diff(values), values[1] - values[0]):
        return f"{values[0]:g}:{values[1] - values[0]:g}:{values[-1]:g}"
    return ",".join(f"{v:g}" for v in values)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: str | os.PathLike) -> Path:
    import matplotlib.pyplot as plt

    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out
