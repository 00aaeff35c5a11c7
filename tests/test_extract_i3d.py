"""The I3D architecture without weights: TF "SAME" padding, endpoint shapes, batch-norm fusion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sola.extract.i3d import InceptionI3d, MaxPool3dSame, Unit3D, fuse_batch_norm, pad_same, same_padding


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [
        (224, 7, 2, (2, 3)),  # Conv3d_1a spatially: out 112, total (111*2+7-224)=5, extra pixel after
        (16, 7, 2, (2, 3)),  # Conv3d_1a in time
        (112, 3, 2, (0, 1)),  # MaxPool3d_2a: out 56, total 1: all of it after
        (8, 3, 2, (0, 1)),  # MaxPool3d_4a in time
        (28, 3, 2, (0, 1)),
        (14, 2, 2, (0, 0)),  # MaxPool3d_5a on an even map: no padding
        (7, 2, 2, (0, 1)),  # MaxPool3d_5a on an odd map: out 4
        (5, 3, 1, (1, 1)),  # stride 1, odd kernel: symmetric
        (9, 1, 1, (0, 0)),
        (1, 7, 2, (3, 3)),  # tiny input: out 1, total 6
    ],
)
def test_same_padding_matches_hand_computed_values(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_strided_conv_pads_asymmetrically_like_tensorflow():
    # 1-D problem embedded in 3-D: x = 1..6 along W, kernel [1, 10, 100], stride 2, SAME.
    # TF: out = ceil(6/2) = 3, total pad = (3-1)*2+3-6 = 1 -> (0, 1): windows [1,2,3], [3,4,5], [5,6,0].
    x = torch.arange(1.0, 7.0).view(1, 1, 1, 1, 6)
    weight = torch.tensor([1.0, 10.0, 100.0]).view(1, 1, 1, 1, 3)
    padded, symmetric = pad_same(x, (1, 1, 3), (1, 1, 2))
    out = F.conv3d(padded, weight, stride=(1, 1, 2), padding=symmetric)
    expected = [1 + 20 + 300, 3 + 40 + 500, 5 + 60 + 0]
    assert out.flatten().tolist() == expected
    # PyTorch's own symmetric padding would give different numbers: the port needs ours.
    naive = F.conv3d(x, weight, stride=(1, 1, 2), padding=(0, 0, 1))
    assert naive.flatten().tolist() != expected


def test_conv_unit_matches_a_numpy_reference_with_tf_padding():
    torch.manual_seed(0)
    unit = Unit3D(2, 3, (3, 3, 3), (2, 2, 2)).eval()
    torch.nn.init.normal_(unit.conv.weight)
    x = torch.randn(1, 2, 5, 6, 7)
    with torch.no_grad():
        out = unit(x)  # conv -> batch norm (mean 0, var 1, eps 1e-3) -> ReLU
    xn, wn = x.numpy()[0], unit.conv.weight.detach().numpy()
    pads = [same_padding(n, 3, 2) for n in xn.shape[1:]]  # T: (1,1)  H: (0,1)  W: (1,1)
    xp = np.pad(xn, [(0, 0)] + pads)
    shape = [-(-n // 2) for n in xn.shape[1:]]
    ref = np.zeros((3, *shape), np.float32)
    for t in range(shape[0]):
        for h in range(shape[1]):
            for w in range(shape[2]):
                patch = xp[:, 2 * t : 2 * t + 3, 2 * h : 2 * h + 3, 2 * w : 2 * w + 3]
                ref[:, t, h, w] = np.tensordot(wn, patch, axes=([1, 2, 3, 4], [0, 1, 2, 3]))
    assert out.shape[2:] == (3, 3, 4)
    ref = np.maximum(ref / np.sqrt(1.0 + 1e-3), 0.0)
    assert (ref == 0).any() and (ref > 0).any()
    np.testing.assert_allclose(out[0].numpy(), ref, rtol=1e-5, atol=1e-5)


def test_max_pool_pads_with_minus_infinity():
    # All values negative: a zero pad would win at the border; TF SAME never lets padding win.
    x = -torch.arange(1.0, 8.0).view(1, 1, 1, 1, 7)  # -1 .. -7
    out = MaxPool3dSame((1, 1, 2), (1, 1, 2))(x)  # out 4 windows: [-1,-2] [-3,-4] [-5,-6] [-7,pad]
    assert out.flatten().tolist() == [-1.0, -3.0, -5.0, -7.0]
    same = MaxPool3dSame((3, 3, 3), (1, 1, 1))(-torch.ones(1, 1, 3, 3, 3))
    assert torch.all(same == -1.0)


def test_endpoint_shapes_for_a_16_frame_224_clip():
    with torch.device("meta"):  # shapes only: the meta device computes no values
        model = InceptionI3d().eval()
    expected = {
        "Conv3d_1a_7x7": (64, 8, 112, 112),
        "MaxPool3d_2a_3x3": (64, 8, 56, 56),
        "Conv3d_2b_1x1": (64, 8, 56, 56),
        "Conv3d_2c_3x3": (192, 8, 56, 56),
        "MaxPool3d_3a_3x3": (192, 8, 28, 28),
        "Mixed_3b": (256, 8, 28, 28),
        "Mixed_3c": (480, 8, 28, 28),
        "MaxPool3d_4a_3x3": (480, 4, 14, 14),
        "Mixed_4b": (512, 4, 14, 14),
        "Mixed_4c": (512, 4, 14, 14),
        "Mixed_4d": (512, 4, 14, 14),
        "Mixed_4e": (528, 4, 14, 14),
        "Mixed_4f": (832, 4, 14, 14),
        "MaxPool3d_5a_2x2": (832, 2, 7, 7),
        "Mixed_5b": (832, 2, 7, 7),
        "Mixed_5c": (1024, 2, 7, 7),
    }
    seen = {}
    hooks = [getattr(model, name).register_forward_hook(
        lambda module, args, out, name=name: seen.__setitem__(name, tuple(out.shape[1:]))
    ) for name in expected]  # fmt: skip
    with torch.inference_mode():
        features, logits = model(torch.zeros(1, 3, 16, 224, 224, device="meta"))
    for hook in hooks:
        hook.remove()
    assert seen == expected
    assert features.shape == (1, 1024) and logits.shape == (1, 400)


def test_fused_batch_norm_computes_the_same_function():
    torch.manual_seed(0)
    model = InceptionI3d().eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith(("running_mean", "bn.bias")):
                tensor.normal_(0.0, 0.5)
    x = torch.rand(2, 3, 8, 32, 32) * 2 - 1
    with torch.inference_mode():
        features, logits = model(x)
        fused_features, fused_logits = fuse_batch_norm(model)(x)
    assert not any(name.endswith("running_mean") for name in model.state_dict())
    torch.testing.assert_close(fused_features, features, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused_logits, logits, rtol=1e-4, atol=1e-4)
