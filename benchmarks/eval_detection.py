"""Time `sola eval-detection` at ActivityNet scale (4,728 videos, ~200,000 predictions, 200 classes).

The data are generated with a seed (no download): ActivityNet-like ground truth (1-3 instances of
one class per video, videos of 30-240 s) and predictions around them (jittered copies, other
classes, random segments), written as the official JSON files. Prints the time of reading and
evaluating (what the CLI does), of evaluating alone, and the plain-loop reference
(`sola.evaluate.metrics.reference`) measured on a slice of the videos in the same run, with the ratio.
The official evaluator takes about 100 s on this scale (issue 4) and 7.2 s on the THUMOS14 oracle.

    .venv/bin/python benchmarks/eval_detection.py [--videos 4728] [--per-video 42] [--seed 0]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from sola.data.annotations import load_annotations
from sola.data.predictions import ground_truth_segments, read_predictions
from sola.evaluate.metrics import ACTIVITYNET_TIOU, evaluate_detection, evaluate_proposals
from sola.evaluate.metrics.reference import reference_average_precision


def make_case(num_videos: int, per_video: int, num_classes: int, seed: int) -> tuple[dict, dict]:
    """ActivityNet-format ground truth and prediction dicts, generated from `seed`."""
    rng = np.random.default_rng(seed)
    classes = [f"class_{k:03d}" for k in range(num_classes)]
    database, results = {}, {}
    for v in range(num_videos):
        video_id = f"vid{v:05d}"
        duration = float(rng.uniform(30, 240))
        label = classes[rng.integers(num_classes)]
        count = int(rng.integers(1, 4))
        length = rng.uniform(0.05, 0.6, count) * duration / count
        start = rng.uniform(0, duration - length)
        database[video_id] = {
            "subset": "validation",
            "duration": round(duration, 2),
            "annotations": [{"label": label, "segment": [round(s, 2), round(s + l, 2)]} for s, l in zip(start, length)],
        }
        # Predictions: jittered copies of the ground truth and random segments; 70% with the right class.
        source = rng.integers(0, count, per_video)
        jitter = rng.normal(0, 0.15, (per_video, 2)) * length[source, None]
        p_start = np.clip(start[source] + jitter[:, 0], 0, duration)
        p_end = np.clip(start[source] + length[source] + jitter[:, 1], 0, duration)
        random = rng.random(per_video) < 0.3
        p_start[random] = rng.uniform(0, duration, random.sum())
        p_end[random] = np.minimum(duration, p_start[random] + rng.uniform(1, 60, random.sum()))
        p_start, p_end = np.minimum(p_start, p_end), np.maximum(p_start, p_end)
        wrong = rng.random(per_video) < 0.3
        labels = np.where(wrong, rng.integers(0, num_classes, per_video), classes.index(label))
        score = rng.random(per_video)
        results[video_id] = [
            {"label": classes[c], "score": float(s), "segment": [float(a), float(b)]}
            for c, s, a, b in zip(labels, score, p_start, p_end)
        ]
    return {"version": "bench", "taxonomy": [], "database": database}, {"version": "bench", "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=4728)
    parser.add_argument("--per-video", type=int, default=42)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--naive-videos", type=int, default=300, help="videos for the plain-loop baseline")
    args = parser.parse_args()

    gt_dict, pred_dict = make_case(args.videos, args.per_video, args.classes, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, pred_path = Path(tmp) / "gt.json", Path(tmp) / "pred.json"
        gt_path.write_text(json.dumps(gt_dict))
        pred_path.write_text(json.dumps(pred_dict))
        size_mb = pred_path.stat().st_size / 1e6
        gt_count = len(gt_dict["database"])
        naive_videos = set(list(gt_dict["database"])[: args.naive_videos])
        del gt_dict, pred_dict  # a fresh process (the CLI) does not hold these objects
        gc.collect()

        wall, cpu = time.perf_counter(), time.process_time()
        truth = ground_truth_segments(load_annotations(gt_path, bad_segments="keep"), "validation")
        predictions = read_predictions(pred_path)
        read_s, read_cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall, cpu = time.perf_counter(), time.process_time()
        result = evaluate_detection(truth, predictions, ACTIVITYNET_TIOU)
        eval_s, eval_cpu = time.perf_counter() - wall, time.process_time() - cpu

    print(f"ActivityNet-scale case (seed {args.seed}): {gt_count} videos, {len(truth)} ground-truth "
          f"segments, {len(predictions)} predictions ({size_mb:.0f} MB JSON), {len(result.classes)} classes, "
          f"{len(ACTIVITYNET_TIOU)} tIoU thresholds")
    print(f"  average mAP {100 * result.average_mAP:.2f}  (mAP@0.5 {100 * result.mAP[0]:.2f})")
    # CPU time beside wall time: on a shared machine the wall clock also counts waiting for a core.
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"  read ground truth + predictions: {read_s:6.2f} s wall {read_cpu:6.2f} s CPU")
    print(f"  evaluate (vectorised):            {eval_s:6.2f} s wall {eval_cpu:6.2f} s CPU")
    print(f"  total (what the CLI does):        {read_s + eval_s:6.2f} s wall {read_cpu + eval_cpu:6.2f} s CPU"
          "   (official evaluator: ~100 s; target < 2 s)")

    wall, cpu = time.perf_counter(), time.process_time()
    proposals = evaluate_proposals(truth, predictions, max_avg_proposals=100)
    print(f"  AR@AN on the same predictions as proposals (labels ignored): AR@100 {100 * proposals.recall_at(100):.2f}, "
          f"AUC {100 * proposals.auc:.2f} in {time.perf_counter() - wall:.2f} s wall {time.process_time() - cpu:.2f} s CPU")

    # The plain-loop reference on a slice, and ours on the same slice.
    keep_videos = naive_videos
    truth_slice = truth.select(np.isin(truth.video, list(keep_videos)))
    pred_slice = predictions.select(np.isin(predictions.video, list(keep_videos)))
    warnings.simplefilter("ignore")  # the slice holds predictions of classes it has no ground truth for
    start = time.perf_counter()
    fast = evaluate_detection(truth_slice, pred_slice, ACTIVITYNET_TIOU)
    fast_s = time.perf_counter() - start
    start = time.perf_counter()
    _, naive_ap = reference_average_precision(truth_slice, pred_slice, ACTIVITYNET_TIOU)
    naive_s = time.perf_counter() - start
    agree = np.abs(naive_ap - fast.ap).max()
    print(f"  slice of {len(keep_videos)} videos ({len(pred_slice)} predictions): plain loop {naive_s:.2f} s, "
          f"vectorised {fast_s:.3f} s, ratio {naive_s / fast_s:.0f}x, max |AP difference| {agree:.1e}")


if __name__ == "__main__":
    main()
