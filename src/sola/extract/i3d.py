"""Inception-I3D (Carreira & Zisserman, 2017) in PyTorch, with TensorFlow "SAME" padding.

Module names follow the DeepMind/Flax endpoints (`Conv3d_1a_7x7`, `Mixed_3b.Branch_1.Conv3d_0b_3x3`,
...) so the weight conversion is a rename plus a transpose. Input `(B, 3, T, H, W)` RGB in [-1, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sola.extract.weights import BN_EPSILON

# Branch widths [b0, b1a, b1b, b2a, b2b, b3] of each Inception block.
MIXED_WIDTHS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}
FEATURE_DIM = 1024  # channels of Mixed_5c
NUM_CLASSES = 400


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one axis: `(before, after)`; the odd extra pixel goes after.

    Output length is `ceil(size / stride)`; total padding `max((out - 1) * stride + kernel - size, 0)`.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float = 0.0):
    """Pad `(B, C, T, H, W)` for a TF "SAME" op; returns `(x, symmetric_padding)`.

    When every axis pads symmetrically the tensor is returned untouched together with the padding
    to hand to the conv/pool itself (no copy); otherwise it is padded explicitly with `value`
    (zeros for convs, -inf for max pools) and the symmetric padding is `(0, 0, 0)`.
    """
    pads = [same_padding(size, k, s) for size, k, s in zip(x.shape[2:], kernel, stride)]
    if all(before == after for before, after in pads):
        return x, tuple(before for before, _ in pads)
    flat = [p for before, after in reversed(pads) for p in (before, after)]  # F.pad wants W first
    return F.pad(x, flat, value=value), (0, 0, 0)


class FrozenBatchNorm3d(nn.Module):
    """Inference batch norm without scale (Sonnet v1): `(x - mean) / sqrt(var + eps) + bias`."""

    def __init__(self, channels: int, eps: float = BN_EPSILON) -> None:
        super().__init__()
        self.eps = eps
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, None, self.bias, False, 0.0, self.eps)


class Unit3D(nn.Module):
    """Conv3d (TF "SAME") -> batch norm -> ReLU; the logits unit has a bias and neither of the rest."""

    def __init__(self, c_in: int, c_out: int, kernel=(1, 1, 1), stride=(1, 1, 1), logits: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(c_in, c_out, self.kernel, self.stride, bias=logits)
        self.bn = nn.Identity() if logits else FrozenBatchNorm3d(c_out)
        self.relu = not logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = pad_same(x, self.kernel, self.stride)
        x = F.conv3d(x, self.conv.weight, self.conv.bias, self.stride, padding)
        x = self.bn(x)
        return F.relu(x, inplace=True) if self.relu else x


class MaxPool3dSame(nn.Module):
    """Max pool with TF "SAME" padding (padded cells never win: they are -inf)."""

    def __init__(self, kernel, stride) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, padding = pad_same(x, self.kernel, self.stride, value=float("-inf"))
        # PyTorch's implicit pool padding is -inf as well, so the no-copy path is exact too.
        return F.max_pool3d(x, self.kernel, self.stride, padding)


class Branch(nn.Sequential):
    """One Inception branch; children keep the DeepMind names (`Conv3d_0a_1x1`, ...)."""


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on channels: 1x1 | 1x1-3x3 | 1x1-3x3 | pool-1x1."""

    def __init__(self, c_in: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        b0, b1a, b1b, b2a, b2b, b3 = widths
        self.Branch_0 = Branch()
        self.Branch_0.add_module("Conv3d_0a_1x1", Unit3D(c_in, b0))
        self.Branch_1 = Branch()
        self.Branch_1.add_module("Conv3d_0a_1x1", Unit3D(c_in, b1a))
        self.Branch_1.add_module("Conv3d_0b_3x3", Unit3D(b1a, b1b, (3, 3, 3)))
        self.Branch_2 = Branch()
        self.Branch_2.add_module("Conv3d_0a_1x1", Unit3D(c_in, b2a))
        self.Branch_2.add_module("Conv3d_0b_3x3", Unit3D(b2a, b2b, (3, 3, 3)))
        self.Branch_3 = Branch()
        self.Branch_3.add_module("MaxPool3d_0a_3x3", MaxPool3dSame((3, 3, 3), (1, 1, 1)))
        self.Branch_3.add_module("Conv3d_0b_1x1", Unit3D(c_in, b3))
        self.out_channels = b0 + b1b + b2b + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.Branch_0(x), self.Branch_1(x), self.Branch_2(x), self.Branch_3(x)], dim=1)


class InceptionI3d(nn.Module):
    """The Kinetics-400 RGB I3D: `(B, 3, T, H, W)` in [-1, 1] -> Mixed_5c features and logits."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionBlock(192, MIXED_WIDTHS["Mixed_3b"])
        self.Mixed_3c = InceptionBlock(256, MIXED_WIDTHS["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionBlock(480, MIXED_WIDTHS["Mixed_4b"])
        self.Mixed_4c = InceptionBlock(512, MIXED_WIDTHS["Mixed_4c"])
        self.Mixed_4d = InceptionBlock(512, MIXED_WIDTHS["Mixed_4d"])
        self.Mixed_4e = InceptionBlock(512, MIXED_WIDTHS["Mixed_4e"])
        self.Mixed_4f = InceptionBlock(528, MIXED_WIDTHS["Mixed_4f"])
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionBlock(832, MIXED_WIDTHS["Mixed_5b"])
        self.Mixed_5c = InceptionBlock(832, MIXED_WIDTHS["Mixed_5c"])
        self.Logits = nn.Module()
        self.Logits.add_module("Conv3d_0c_1x1", Unit3D(FEATURE_DIM, num_classes, logits=True))
        self.endpoints = [
            "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
            "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
            "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
        ]  # fmt: skip

    def trunk(self, x: torch.Tensor, until: str = "Mixed_5c") -> torch.Tensor:
        """Run the endpoints up to and including `until`; `(B, 3, T, H, W)` -> `(B, C, T', H', W')`."""
        for name in self.endpoints:
            x = getattr(self, name)(x)
            if name == until:
                break
        return x

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(B, 3, T, H, W)` in [-1, 1] -> features `(B, 1024)` and logits `(B, 400)`.

        Features are Mixed_5c averaged over time and space. Logits follow DeepMind: a 2x7x7 VALID
        average pool (clipped to the map when it is smaller, e.g. T < 9 frames or H < 224), a 1x1x1
        conv, then the mean over the remaining positions.
        """
        x = self.trunk(x)  # (B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))
        features = x.mean(dim=(2, 3, 4))
        window = tuple(min(k, size) for k, size in zip((2, 7, 7), x.shape[2:]))
        pooled = F.avg_pool3d(x, window, stride=1)
        logits = self.Logits.Conv3d_0c_1x1(pooled).mean(dim=(2, 3, 4))
        return features, logits


@torch.no_grad()
def fuse_batch_norm(model: InceptionI3d) -> InceptionI3d:
    """Fold every frozen batch norm into its conv (weight scale + bias), in place; for inference.

    The fused model computes the same function with one op fewer per unit; its state dict no longer
    matches the checkpoint layout, so fuse after loading weights.
    """
    for unit in model.modules():
        if isinstance(unit, Unit3D) and isinstance(unit.bn, FrozenBatchNorm3d):
            bn = unit.bn
            scale = torch.rsqrt(bn.running_var + bn.eps)  # (C_out,)
            weight = unit.conv.weight * scale.view(-1, 1, 1, 1, 1)
            bias = bn.bias - bn.running_mean * scale
            unit.conv.weight = nn.Parameter(weight, requires_grad=False)
            unit.conv.bias = nn.Parameter(bias, requires_grad=False)
            unit.bn = nn.Identity()
    return model
