"""Target assignment on hand-made segments (values worked out by hand in the comments)."""

import pytest

torch = pytest.importorskip("torch")

from sola.tal.assignment import assign_targets  # noqa: E402
from sola.tal.config import TalConfig  # noqa: E402
from sola.tal.model import make_points  # noqa: E402


def positives(points, cls, reg):
    """{(t, stride): (class indices, (d_start, d_end))} of the positive points."""
    out = {}
    for row in torch.nonzero(cls.sum(1) > 0).squeeze(1).tolist():
        t, _, _, stride = points[row].tolist()
        out[(t, stride)] = (torch.nonzero(cls[row]).squeeze(1).tolist(), tuple(reg[row].tolist()))
    return out


def test_single_segment_default_ranges_and_centre_sampling():
    # GT [10, 20], centre 15, label 1. With radius 1.5:
    # level 0 (stride 1): centre region (13.5, 16.5) -> t = 14, 15, 16, but their reach (5..6) > 4;
    # level 1 (stride 2): region (12, 18) -> t = 14, 16, reach 6 in [4, 8]: positives;
    # level 2 (stride 4): region (9, 21) clipped to (10, 20) -> t = 12 (reach 8 in [8, 16]), t = 16 (reach 6, no);
    # level 3+ : reach never reaches 16.
    config = TalConfig()
    points = make_points(64, config)
    cls, reg = assign_targets(points, torch.tensor([[10.0, 20.0]]), torch.tensor([1]), num_classes=3, radius=1.5)
    assert positives(points, cls, reg) == {
        (14.0, 2.0): ([1], (2.0, 3.0)),  # (14 - 10, 20 - 14) / 2
        (16.0, 2.0): ([1], (3.0, 2.0)),
        (12.0, 4.0): ([1], (0.5, 2.0)),  # (2, 8) / 4
    }
    negative = cls.sum(1) == 0
    assert torch.all(reg[negative] == 0)


def test_shortest_ground_truth_wins_and_ties_share():
    config = TalConfig()
    config.model.regression_range = [[0, 10000]] * 6  # every point may regress anything
    points = make_points(64, config)
    long_seg, short_seg = [0.0, 32.0], [8.0, 24.0]  # same centre 16
    cls, reg = assign_targets(points, torch.tensor([long_seg, short_seg]), torch.tensor([0, 2]), 3, radius=1.5)
    row = int(torch.nonzero((points[:, 0] == 16) & (points[:, 3] == 1)))
    assert cls[row].tolist() == [0.0, 0.0, 1.0]  # the shorter [8, 24] wins
    assert reg[row].tolist() == [8.0, 8.0]
    # two ground truths of equal length at the same place: the point carries both labels
    cls, reg = assign_targets(points, torch.tensor([short_seg, short_seg]), torch.tensor([0, 1]), 3, radius=1.5)
    assert cls[row].tolist() == [1.0, 1.0, 0.0]


def test_points_outside_every_segment_are_negative_and_empty_video():
    config = TalConfig()
    points = make_points(128, config)
    segments = torch.tensor([[30.0, 50.0], [80.0, 84.0]])
    cls, reg = assign_targets(points, segments, torch.tensor([0, 1]), 2, radius=1.5)
    t = points[:, 0]
    inside_any = ((t > 30) & (t < 50)) | ((t > 80) & (t < 84))
    assert torch.all(cls.sum(1)[~inside_any] == 0)
    assert cls.sum() > 0 and torch.all(reg >= 0)
    cls, reg = assign_targets(points, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), 2)
    assert cls.shape == (points.shape[0], 2) and cls.sum() == 0 and reg.abs().sum() == 0


def test_make_points_levels_and_ranges():
    config = TalConfig()
    points = make_points(64, config)
    assert points.shape == (64 + 32 + 16 + 8 + 4 + 2, 4)
    level5 = points[points[:, 3] == 32]
    assert level5[:, 0].tolist() == [0.0, 32.0]
    assert level5[0, 1:3].tolist() == [64.0, 10000.0]
