"""Timeline pictures (sola.viz.plots)."""

import numpy as np

from sola.viz.plots import class_colors, detection_lanes, timeline_figure


def test_lanes_never_overlap_and_run_out_best_first():
    starts, ends = np.array([0.0, 1.0, 5.0, 0.5]), np.array([2.0, 3.0, 6.0, 1.0])
    lanes = detection_lanes(starts, ends, max_lanes=2)
    assert lanes.tolist() == [0, 1, 0, -1]  # the 4th overlaps both lanes: not drawn


def test_class_colours_are_stable_and_distinct():
    first, second = class_colors(["b", "a", "c"]), class_colors(["c", "a", "b", "a"])
    assert first == second and len(set(first.values())) == 3


def test_timeline_writes_a_png_atomically_with_more_detections_than_lanes(tmp_path):
    detections = [(8.5, 15.2, "jump", 0.9), (9.0, 14.0, "jump", 0.5), (2.0, 4.0, "swing", 0.3), (20, 22, "jump", 0.05)]
    out = timeline_figure(tmp_path / "t.png", 24.0, detections, [(8.86, 15.01, "jump")], min_score=0.1, max_lanes=1)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.tmp*"))
