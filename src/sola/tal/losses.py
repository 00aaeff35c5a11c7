"""Losses of the TAL head: sigmoid focal loss, 1-D DIoU loss, and their combination.

The classification loss is summed over valid points and divided by an exponential moving average
of the number of positive points (`LossNormalizer`), as ActionFormer does; the DIoU loss is summed
over positive points and divided by the same normaliser.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
                       gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss of sigmoid logits against targets in [0, 1]; any shape, same shape out.

    loss = -alpha_t (1 - p_t)^gamma log(p_t), with p_t = p for targets 1 and 1 - p for targets 0
    (computed as BCE-with-logits for stability); alpha < 0 disables the alpha weighting.
    """
    probs = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = bce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss


def diou_loss(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """1-D distance-IoU loss of segments given as distances from a shared point.

    pred, target: (N, 2) non-negative distances (to start, to end) from the same point. Returns (N,):
    1 - IoU + (distance between centres / length of the smallest enclosing segment)^2.
    """
    pred_left, pred_right = pred[:, 0], pred[:, 1]
    true_left, true_right = target[:, 0], target[:, 1]
    intersection = torch.minimum(pred_left, true_left) + torch.minimum(pred_right, true_right)
    union = (pred_left + pred_right) + (true_left + true_right) - intersection
    iou = intersection / union.clamp(min=eps)
    enclosing = torch.maximum(pred_left, true_left) + torch.maximum(pred_right, true_right)
    centre_gap = 0.5 * ((pred_right - pred_left) - (true_right - true_left))
    return 1.0 - iou + (centre_gap / enclosing.clamp(min=eps)) ** 2


class LossNormalizer:
    """Exponential moving average of the positive count: value <- m * value + (1 - m) * max(count, 1)."""

    def __init__(self, init: float = 100.0, momentum: float = 0.9) -> None:
        self.value, self.momentum = float(init), float(momentum)

    def update(self, num_positive: int) -> float:
        """Fold in one batch's positive count and return the new normaliser."""
        self.value = self.momentum * self.value + (1 - self.momentum) * max(num_positive, 1)
        return self.value


def detection_loss(cls_logits: torch.Tensor, offsets: torch.Tensor, mask: torch.Tensor,
                   cls_targets: torch.Tensor, reg_targets: torch.Tensor, normalizer: LossNormalizer,
                   alpha: float = 0.25, gamma: float = 2.0, loss_weight: float = 1.0,
                   label_smoothing: float = 0.0, total_positive=None) -> dict[str, torch.Tensor]:
    """Focal + weighted DIoU loss of a batch; padded points (mask False) contribute nothing.

    cls_logits (B, P, K), offsets (B, P, 2), mask (B, P) bool, cls_targets (B, P, K),
    reg_targets (B, P, 2). Returns `loss`, `cls_loss`, `reg_loss` (scalars) and `num_positive`.
    Updates `normalizer` with this batch's positive count; `total_positive(count)` turns this
    process's count into the global batch's (DDP: a sum over ranks), so every rank normalises alike.
    """
    positive = (cls_targets.sum(-1) > 0) & mask  # (B, P)
    num_positive = int(positive.sum().item())
    norm = normalizer.update(num_positive if total_positive is None else total_positive(num_positive))
    targets = cls_targets[mask]  # (V, K)
    if label_smoothing > 0:
        targets = targets * (1 - label_smoothing) + label_smoothing / (targets.shape[-1] + 1)
    cls_loss = sigmoid_focal_loss(cls_logits[mask], targets, alpha, gamma).sum() / norm
    if num_positive:
        reg_loss = diou_loss(offsets[positive], reg_targets[positive]).sum() / norm
    else:
        reg_loss = offsets.sum() * 0.0
    loss = cls_loss + loss_weight * reg_loss
    return {"loss": loss, "cls_loss": cls_loss.detach(), "reg_loss": reg_loss.detach(),
            "num_positive": torch.tensor(num_positive)}
