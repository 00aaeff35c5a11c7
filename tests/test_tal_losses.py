"""Focal and DIoU losses against hand-computed values; padded points contribute nothing."""

import math

import pytest

torch = pytest.importorskip("torch")

from sola.tal.losses import LossNormalizer, detection_loss, diou_loss, sigmoid_focal_loss  # noqa: E402


def test_focal_loss_hand_values():
    logits = torch.tensor([0.0, 0.0, math.log(3.0), math.log(3.0)])
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0])
    loss = sigmoid_focal_loss(logits, targets, alpha=0.25, gamma=2.0)
    expected = [
        0.25 * 0.5**2 * math.log(2),  # p = 0.5, positive
        0.75 * 0.5**2 * math.log(2),  # p = 0.5, negative
        0.25 * 0.25**2 * -math.log(0.75),  # p = 0.75, positive: p_t = 0.75
        0.75 * 0.75**2 * -math.log(0.25),  # p = 0.75, negative: p_t = 0.25
    ]
    assert loss.tolist() == pytest.approx(expected, rel=1e-6)


def test_focal_loss_gamma_zero_is_weighted_bce():
    logits, targets = torch.randn(50), torch.randint(0, 2, (50,)).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    weights = 0.25 * targets + 0.75 * (1 - targets)
    assert torch.allclose(sigmoid_focal_loss(logits, targets, 0.25, 0.0), weights * bce, atol=1e-6)


def test_diou_loss_hand_values():
    pred = torch.tensor([[2.0, 2.0], [0.0, 1.0], [1.5, 2.5]])
    target = torch.tensor([[1.0, 3.0], [3.0, 0.0], [1.5, 2.5]])
    # row 0: pred [t-2, t+2], truth [t-1, t+3]: IoU 3/5, enclosing 5, centres 1 apart -> 1 - 0.6 + 0.04
    # row 1: pred [t, t+1], truth [t-3, t]: IoU 0, enclosing 4, centres 2 apart -> 1 + 0.25
    # row 2: identical -> 0
    assert diou_loss(pred, target).tolist() == pytest.approx([0.44, 1.25, 0.0], abs=1e-6)


def test_loss_normalizer_is_an_ema_of_positive_counts():
    norm = LossNormalizer(init=100, momentum=0.9)
    assert norm.update(10) == pytest.approx(91.0)
    assert norm.update(0) == pytest.approx(0.9 * 91 + 0.1 * 1)  # at least one positive is assumed


def test_padded_points_give_no_loss_and_no_gradient():
    torch.manual_seed(0)
    batch, points, classes = 2, 12, 3
    mask = torch.ones(batch, points, dtype=torch.bool)
    mask[1, 8:] = False
    logits = torch.randn(batch, points, classes, requires_grad=True)
    offsets = torch.rand(batch, points, 2, requires_grad=True)
    cls_targets = torch.zeros(batch, points, classes)
    cls_targets[0, 3, 1] = cls_targets[1, 2, 0] = 1.0
    cls_targets[1, 9, 2] = 1.0  # a "positive" on a padded point must be ignored
    reg_targets = torch.rand(batch, points, 2) + 0.5
    out = detection_loss(logits, offsets, mask, cls_targets, reg_targets, LossNormalizer(100, 0.9))
    out["loss"].backward()
    assert int(out["num_positive"]) == 2
    assert torch.all(logits.grad[1, 8:] == 0) and torch.all(offsets.grad[1, 8:] == 0)
    # changing anything at padded points changes nothing
    logits2 = logits.detach().clone()
    logits2[1, 8:] = 50.0
    again = detection_loss(logits2, offsets.detach(), mask, cls_targets, reg_targets, LossNormalizer(100, 0.9))
    assert float(again["loss"].detach()) == pytest.approx(float(out["loss"].detach()), rel=1e-6)
    # hand check of the normalisation: focal sum over valid points / (0.9 * 100 + 0.1 * 2)
    valid = mask
    focal = sigmoid_focal_loss(logits.detach()[valid], cls_targets[valid]).sum() / 90.2
    assert float(out["cls_loss"]) == pytest.approx(float(focal), rel=1e-6)
