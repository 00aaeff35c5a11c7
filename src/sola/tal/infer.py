"""Inference of the TAL head: decode points into segments, suppress, convert to seconds, format.

Predictions use the official ActivityNet format:
`{"version": ..., "results": {video_id: [{"label": str, "score": float, "segment": [start_s, end_s]}]},
"external_data": {...}}`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from tqdm import tqdm

from sola.core.distributed import gather_dicts, shard_context
from sola.core.errors import AnnotationError
from sola.core.inputs import input_file
from sola.tal.config import TalConfig
from sola.tal.data import load_features, pad_batch, resize_item, snippets_to_seconds
from sola.tal.model import TalModel, make_points
from sola.tal.nms import batched_nms


def decode_video(cls_logits: torch.Tensor, offsets: torch.Tensor, mask: torch.Tensor, points: torch.Tensor,
                 config: TalConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate segments of one video before NMS.

    cls_logits (P, K), offsets (P, 2), mask (P,), points (P, 4) from `make_points`. Per level, keeps
    points x classes scoring above `pre_nms_thresh` (at most `pre_nms_topk`), decodes
    [t - d_start * stride, t + d_end * stride] and drops segments shorter than `duration_thresh`.
    Returns segments (N, 2) in snippets, scores (N,), labels (N,). Padded points never produce one.
    """
    test = config.test
    num_classes = cls_logits.shape[1]
    probs = torch.sigmoid(cls_logits.float()) * mask[:, None].float()  # (P, K)
    strides = points[:, 3]
    all_segments, all_scores, all_labels = [], [], []
    for stride in torch.unique(strides):
        level = torch.nonzero(strides == stride).squeeze(1)
        flat = probs[level].reshape(-1)  # (P_l * K,)
        candidates = torch.nonzero(flat > test.pre_nms_thresh).squeeze(1)
        if candidates.numel() > test.pre_nms_topk:
            top = flat[candidates].topk(test.pre_nms_topk).indices
            candidates = candidates[top]
        point = level[candidates // num_classes]
        label = candidates % num_classes
        t = points[point, 0]
        start = t - offsets[point, 0].float() * stride
        end = t + offsets[point, 1].float() * stride
        long_enough = (end - start) > test.duration_thresh
        all_segments.append(torch.stack([start, end], 1)[long_enough])
        all_scores.append(flat[candidates][long_enough])
        all_labels.append(label[long_enough])
    return (torch.cat(all_segments).cpu().numpy().astype(np.float64),
            torch.cat(all_scores).cpu().numpy().astype(np.float64),
            torch.cat(all_labels).cpu().numpy())


def postprocess_video(segments: np.ndarray, scores: np.ndarray, labels: np.ndarray, item: dict[str, Any],
                      config: TalConfig) -> dict[str, np.ndarray]:
    """NMS, voting and conversion to seconds for one video; segments clipped to [0, duration].

    segments (N, 2) in snippets. Returns `segments` (K, 2) in seconds, `scores` (K,), `labels` (K,).
    """
    test = config.test
    segments, scores, labels = batched_nms(
        segments, scores, labels, method=test.nms_method, sigma=test.nms_sigma, iou_threshold=test.iou_threshold,
        min_score=test.min_score, max_seg_num=test.max_seg_num, multiclass=test.multiclass_nms,
        voting_thresh=test.voting_thresh,
    )
    seconds = snippets_to_seconds(segments, item["fps"], item["feat_stride"], item["num_frames"])
    seconds = np.clip(seconds, 0.0, item["duration"])
    keep = seconds[:, 1] > seconds[:, 0]
    return {"segments": seconds[keep], "scores": scores[keep], "labels": labels[keep]}


@torch.no_grad()
def predict_items(model: TalModel, items: Iterable[dict[str, Any]], config: TalConfig, batch_size: int = 1,
                  device: torch.device | str = "cpu", progress: bool | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Detections of every item: {video_id: {"segments" (K, 2) seconds, "scores" (K,), "labels" (K,)}}.

    Under `torchrun` each rank predicts a disjoint shard of the items and every rank returns all detections.
    """
    model.eval()
    context = shard_context()
    items = list(items)[context.rank :: context.world_size]
    stride = 2 ** config.model.branch_layers
    out: dict[str, dict[str, np.ndarray]] = {}
    bar = tqdm(total=len(items), desc="tal infer", unit="video",
               disable=not context.is_main or (None if progress is None else not progress))
    for first in range(0, len(items), batch_size):
        batch = [resize_item(it, config.data.resize_to) if config.data.resize_to else it
                 for it in items[first : first + batch_size]]
        feats, mask = pad_batch([load_features(it["feats"]) for it in batch], stride)
        outputs = model(feats.to(device), mask.to(device))
        points = make_points(feats.shape[1], config, device=outputs["mask"].device)
        for row, item in enumerate(batch):
            candidates = decode_video(outputs["cls_logits"][row], outputs["offsets"][row], outputs["mask"][row],
                                      points, config)
            out[item["video_id"]] = postprocess_video(*candidates, item, config)
        bar.update(len(batch))
    bar.close()
    return gather_dicts(out, context)


def fuse_video_scores(detections: dict[str, dict[str, np.ndarray]], video_scores: dict[str, dict[str, float]],
                      topk: int = 2) -> dict[str, list[dict[str, Any]]]:
    """ActivityNet protocol: class-agnostic proposals x the video's `topk` class scores.

    Each proposal (score p) becomes `topk` detections labelled with the video's best classes
    (score p * class score). Raises `AnnotationError` if a video has no class scores.
    """
    results: dict[str, list[dict[str, Any]]] = {}
    for video_id, det in detections.items():
        if video_id not in video_scores:
            raise AnnotationError(f"video scores: no entry for video {video_id}; the score file must cover every video")
        ranked = sorted(video_scores[video_id].items(), key=lambda kv: -kv[1])[:topk]
        results[video_id] = [
            {"label": label, "score": float(p * class_score), "segment": [float(s), float(e)]}
            for label, class_score in ranked
            for (s, e), p in zip(det["segments"], det["scores"])
        ]
    return results


def to_activitynet(detections: dict[str, dict[str, np.ndarray]], class_names: list[str],
                   mode: str = "multiclass") -> dict[str, Any]:
    """Detections -> the official ActivityNet prediction dict; `mode` is recorded in `external_data`."""
    results = {
        video_id: [
            {"label": class_names[int(label)], "score": float(score), "segment": [float(s), float(e)]}
            for (s, e), score, label in zip(det["segments"], det["scores"], det["labels"])
        ]
        for video_id, det in detections.items()
    }
    return {"version": "VERSION 1.3", "results": results, "external_data": {"used": False, "details": f"sola tal ({mode})"}}


def load_video_scores(path: str | Path) -> dict[str, dict[str, float]]:
    """Read `{video_id: {label: score}}` (JSON) for the ActivityNet protocol; raises `AnnotationError`."""
    path = input_file(path, "video-level class scores file", AnnotationError)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AnnotationError(f"{path}: cannot read video-level class scores ({exc}); "
                              "expected JSON {video_id: {label: score}}") from None
    data = data.get("results", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise AnnotationError(f"{path}: expected JSON {{video_id: {{label: score}}}}")
    return {vid: {str(k): float(v) for k, v in scores.items()} for vid, scores in data.items()}


def prediction_dict(detections: dict[str, dict[str, np.ndarray]], class_names: list[str],
                    video_scores: dict[str, dict[str, float]] | None = None,
                    topk: int = 2) -> tuple[dict[str, Any], str]:
    """`(official ActivityNet prediction dict, how segments were scored)` of a head's detections.

    A class-agnostic head (one class) with `video_scores` fuses them with its proposals (the
    ActivityNet protocol, see `fuse_video_scores`); otherwise the head's own labels are kept.
    """
    if len(class_names) == 1 and video_scores is not None:
        scoring = "class-agnostic proposals x video-level class scores"
        return {"version": "VERSION 1.3", "results": fuse_video_scores(detections, video_scores, topk),
                "external_data": {"used": True, "details": f"sola tal ({scoring})"}}, scoring
    scoring = "class-agnostic proposals" if len(class_names) == 1 else "multi-class detection"
    return to_activitynet(detections, class_names, scoring), scoring


def video_scores_for(config: TalConfig, path: str | Path | None = None) -> dict[str, dict[str, float]] | None:
    """The video-level class scores a class-agnostic run fuses: `path`, else `test.video_scores`, else None."""
    path = path or config.test.video_scores
    if config.data.num_classes != 1 or not path:
        return None
    return load_video_scores(path)
