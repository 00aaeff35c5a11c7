"""The head's model: local attention against a dense reference, and masks for variable lengths."""

import pytest

torch = pytest.importorskip("torch")

from sola.tal.blocks import local_attention  # noqa: E402
from sola.tal.config import TalConfig, load_tal_config  # noqa: E402
from sola.tal.data import make_item, pad_batch  # noqa: E402
from sola.tal.infer import decode_video, predict_items  # noqa: E402
from sola.tal.model import TalModel, make_points  # noqa: E402


def tiny_config(**extra) -> TalConfig:
    overrides = {"data.input_dim": 16, "data.num_classes": 3, "model.embd_dim": 32, "model.head_dim": 32,
                 "model.window_size": 5, "model.dropout": 0.0, "model.drop_path": 0.0, "data.max_seq_len": 256}
    overrides.update(extra)
    return load_tal_config(None, overrides)


@pytest.mark.parametrize("length,half", [(23, 2), (40, 9), (7, 3)])
def test_local_attention_matches_dense_band_mask(length, half):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, length, 8) for _ in range(3))
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, length - 3 :] = False
    got = local_attention(q, k, v, mask, half)
    t = torch.arange(length)
    band = (t[:, None] - t[None, :]).abs() <= half  # (T, T)
    allowed = band[None, None] & mask[:, None, None, :]
    scores = (q @ k.transpose(-1, -2)) / 8**0.5
    expected = scores.masked_fill(~allowed, float("-inf")).softmax(-1) @ v
    expected = torch.nan_to_num(expected) * mask[:, None, :, None]  # padded rows may see no key
    assert torch.allclose(got, expected, atol=1e-5)


def test_forward_shapes_and_padded_points_are_zero():
    config = tiny_config()
    model = TalModel(config).eval()
    feats, mask = pad_batch([torch.randn(70, 16), torch.randn(33, 16)], 32)
    out = model(feats, mask)
    points = sum(96 // 2**level for level in range(6))
    assert out["cls_logits"].shape == (2, points, 3) and out["offsets"].shape == (2, points, 2)
    assert out["mask"].shape == (2, points)
    assert torch.all(out["cls_logits"][~out["mask"]] == 0) and torch.all(out["offsets"][~out["mask"]] == 0)
    assert torch.all(out["offsets"] >= 0)
    with pytest.raises(ValueError, match="multiple of 32"):
        model(torch.randn(1, 40, 16), torch.ones(1, 40, dtype=torch.bool))


def test_padding_does_not_change_valid_outputs():
    torch.manual_seed(1)
    config = tiny_config()
    model = TalModel(config).eval()
    short, long = torch.randn(40, 16), torch.randn(150, 16)
    alone = model(*pad_batch([short], 32))  # padded to 64
    batched = model(*pad_batch([long, short], 32))  # padded to 160
    for name in ("cls_logits", "offsets"):
        start_alone = start_batch = 0
        for level in range(6):
            valid = -(-40 // 2**level)
            a = alone[name][0, start_alone : start_alone + valid]
            b = batched[name][1, start_batch : start_batch + valid]
            assert torch.allclose(a, b, atol=1e-4), (name, level)
            start_alone += 64 // 2**level
            start_batch += 160 // 2**level


def test_padded_points_never_produce_detections():
    config = tiny_config()
    length = 64
    points = make_points(length, config)
    mask = points[:, 0] < 20  # the video is 20 snippets long
    logits = torch.full((points.shape[0], 3), -20.0)
    logits[~mask] = 20.0  # confident garbage on padding
    offsets = torch.ones(points.shape[0], 2)
    segments, scores, labels = decode_video(logits, offsets, mask, points, config)
    assert len(scores) == 0
    logits[3, 1] = 5.0  # one real detection on a valid point
    segments, scores, labels = decode_video(logits, offsets, mask, points, config)
    assert len(scores) == 1 and labels.tolist() == [1] and segments.tolist() == [[2.0, 4.0]]


def test_predictions_stay_inside_the_video():
    torch.manual_seed(2)
    config = tiny_config()
    model = TalModel(config)
    items = [make_item("a", torch.randn(50, 16).numpy(), [[1.0, 3.0]], [0], fps=2.0, feat_stride=1.0,
                       num_frames=1.0, duration=25.0),
             make_item("b", torch.randn(90, 16).numpy(), [], [], fps=2.0, feat_stride=1.0, num_frames=1.0)]
    detections = predict_items(model, items, config, batch_size=2, progress=False)
    assert set(detections) == {"a", "b"}
    for item in items:
        det = detections[item["video_id"]]
        assert len(det["scores"]) <= config.test.max_seg_num
        assert det["segments"].min() >= 0 and det["segments"].max() <= item["duration"]
        assert (det["segments"][:, 1] > det["segments"][:, 0]).all()
