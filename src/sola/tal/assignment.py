"""Target assignment: which ground-truth action each pyramid point is responsible for.

A point at time t on level l (stride s = 2^l) is positive for a ground truth [start, end] when
  * t lies inside the centre region [c - r*s, c + r*s] clipped to [start, end] (c the centre,
    r = `center_sample_radius`, 1.5 by default), and
  * max(t - start, end - t) lies in the level's regression range [low, high] (in snippets);
among the ground truths that qualify, the shortest wins (ties share the point: multi-hot labels).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def assign_targets(points: torch.Tensor, segments: torch.Tensor, labels: torch.Tensor, num_classes: int,
                   radius: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Classification and regression targets of one video.

    points (P, 4) from `make_points` (t, low, high, stride); segments (M, 2) [start, end] in snippets;
    labels (M,) class indices in [0, num_classes). Returns `cls_targets` (P, K) in {0, 1} and
    `reg_targets` (P, 2): distances (t - start, end - t) divided by the point's stride (zero where
    the point is negative).
    """
    num_points = points.shape[0]
    if segments.numel() == 0:
        return points.new_zeros(num_points, num_classes), points.new_zeros(num_points, 2)
    segments = segments.to(points.dtype)
    t, low, high, stride = (points[:, i : i + 1] for i in range(4))  # each (P, 1)
    start, end = segments[None, :, 0], segments[None, :, 1]  # (1, M)
    to_start, to_end = t - start, end - t  # (P, M)
    centre = 0.5 * (start + end)
    centre_left = torch.maximum(centre - radius * stride, start)
    centre_right = torch.minimum(centre + radius * stride, end)
    inside_centre = torch.minimum(t - centre_left, centre_right - t) > 0  # (P, M)
    reach = torch.maximum(to_start, to_end)
    in_range = (reach >= low) & (reach <= high)
    lengths = (end - start).expand(num_points, -1).masked_fill(~(inside_centre & in_range), float("inf"))
    shortest, winner = lengths.min(dim=1)  # (P,)
    chosen = (lengths <= shortest[:, None] + 1e-3) & torch.isfinite(lengths)  # (P, M), ties share
    one_hot = F.one_hot(labels.long(), num_classes).to(points.dtype)  # (M, K)
    cls_targets = (chosen.to(points.dtype) @ one_hot).clamp_(max=1.0)
    rows = torch.arange(num_points, device=points.device)
    reg_targets = torch.stack([to_start[rows, winner], to_end[rows, winner]], dim=1) / stride
    positive = torch.isfinite(shortest)[:, None]
    return cls_targets, reg_targets * positive.to(reg_targets.dtype)
