"""Annotation readers on the real THUMOS14 / ActivityNet files, the time grids, ids, bad input."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from sola.cli.common import add_annotation_arguments, annotations_from_args
from sola.core.errors import AnnotationError
from sola.data.annotations import (FORMATS, Annotations, Segment, SnippetGrid, VideoAnnotation, detect_format, grid_for,
                                   load_annotations, match_ids, register_format, snippet_labels)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
THUMOS = DATA / "annotations" / "thumos14"
ANET = DATA / "annotations" / "activitynet"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent (real fixtures)")


def _counts(annotations: Annotations, subset: str) -> tuple[int, int]:
    """(videos with at least one real segment, real segments) of one subset."""
    part = annotations.subset(subset)
    videos = sum(1 for v in part.values() if any(not s.ambiguous for s in v.segments))
    return videos, part.num_segments(include_ambiguous=False)


@needs_data
def test_thumos14_formats_agree_on_counts():
    actionformer = load_annotations(THUMOS / "thumos14.json", bad_segments="keep")
    assert len(actionformer) == 412 and len(actionformer.labels()) == 20
    for subset, gtad, tsp, expected in [
        ("validation", "gtad_val_Annotation.csv", "tsp_thumos14_valid_tsp_groundtruth.csv", (200, 3007)),
        ("test", "gtad_test_Annotation.csv", "tsp_thumos14_test_tsp_groundtruth.csv", (212, 3358)),
    ]:
        assert _counts(actionformer, subset) == expected
        gtad_ann = load_annotations(THUMOS / gtad)
        assert detect_format(THUMOS / gtad) == "gtad"
        assert _counts(gtad_ann, subset) == expected
        tsp_ann = load_annotations(THUMOS / tsp, bad_segments="keep")
        assert detect_format(THUMOS / tsp) == "tsp"
        assert _counts(tsp_ann, subset) == expected
        # every format puts the same segments on the same video
        video = sorted(actionformer.subset(subset))[7]
        ref = sorted((s.start, s.end, s.label) for s in actionformer[video].segments)
        for other in (gtad_ann, tsp_ann):
            got = sorted((s.start, s.end, s.label) for s in other[video].segments if not s.ambiguous)
            assert got == ref
    # G-TAD's CSV has no label ids: sorted names give ActionFormer's ids
    assert load_annotations(THUMOS / "gtad_val_Annotation.csv").label_index() == actionformer.label_index()


@needs_data
def test_gtad_ambiguous_kept_but_flagged_and_fps_recovered():
    ann = load_annotations(THUMOS / "gtad_val_Annotation.csv")
    ambiguous = [s for v in ann.values() for s in v.segments if s.ambiguous]
    assert len(ambiguous) == 89 and all(s.label_id is None for s in ambiguous)
    assert "Ambiguous" not in ann.labels()
    assert ann["video_validation_0000051"].fps == pytest.approx(30.0)


@needs_data
def test_tsp_metadata_fills_duration_and_fps():
    meta = THUMOS / "tsp_thumos14_valid_metadata.csv"
    with pytest.raises(AnnotationError, match="video_validation_0000364.*outside the video"):
        load_annotations(THUMOS / "gtad_val_Annotation.csv", metadata=meta, bad_segments="error")
    ann = load_annotations(THUMOS / "gtad_val_Annotation.csv", metadata=meta, bad_segments="clip")
    assert ann["video_validation_0000051"].duration == pytest.approx(169.666666666667)
    video = ann["video_validation_0000364"]
    assert all(0 <= s.start <= s.end <= video.duration for s in video.segments)


@needs_data
def test_activitynet_bsn_and_tsp_agree_per_video():
    bsn = load_annotations(ANET / "bsn_anet_anno_action.json")  # video_info CSV found beside it
    assert detect_format(ANET / "bsn_anet_anno_action.json") == "bsn"
    assert len(bsn) == 19228 and len(bsn.labels()) == 200
    assert bsn.subsets() == {"training": 9649, "validation": 4728, "testing": 4851}
    tsp = load_annotations(ANET / "tsp_activitynet_v1-3_valid_tsp_groundtruth.csv", bad_segments="keep")
    val = bsn.subset("VAL")
    common = [vid for vid in val if tsp.get(vid) is not None]
    assert len(common) == 4728
    assert sum(len(val[v].segments) for v in common) == sum(len(tsp.get(v).segments) for v in common) == 7293
    kick = bsn.get("4Lu8ECLHvK4")
    assert kick is bsn["v_4Lu8ECLHvK4"] and kick.segments[0].label == "Playing kickball"


@needs_data
def test_gtad_json_with_string_segments_and_feature_gt():
    ann = load_annotations(THUMOS / "gtad_thumos_gt.json")
    assert len(ann.subset("test")) == 210 and ann.num_segments() == 6318
    gt = load_annotations(DATA / "features" / "i3d_2048_two_stream" / "gt.json")
    assert set(gt) == {"highjump", "tennis26", "golf"}
    assert gt["highjump"].segments[0].label_id == 11


@needs_data
def test_outside_segments_error_names_the_video_and_the_fix():
    with pytest.raises(AnnotationError, match=r"thumos14\.json: video 'video_test_0000270'.*--bad-segments"):
        load_annotations(THUMOS / "thumos14.json", bad_segments="error")
    kept = load_annotations(THUMOS / "thumos14.json")  # the default keeps them as written, and says so
    assert kept.bad_segments["policy"] == "keep" and kept.bad_segments["outside"] > 0
    from sola.data.annotations import bad_segment_note

    assert f"kept {kept.bad_segments['outside']} segment(s) outside their video as written" in bad_segment_note(kept)
    clipped = load_annotations(THUMOS / "thumos14.json", bad_segments="clip")["video_test_0000270"]
    assert all(0 <= s.start <= s.end <= clipped.duration for s in clipped.segments)


@needs_data
def test_time_index_mapping_on_thumos14():
    ann = load_annotations(THUMOS / "thumos14.json", bad_segments="keep")
    video = ann["video_test_0000004"]  # 30 fps, first action 0.2-1.1 s
    grid = grid_for(video, 100, feat_stride=4, num_frames=16)
    centers = grid.centers(100)
    assert centers[0] == pytest.approx(8 / 30) and centers[1] - centers[0] == pytest.approx(4 / 30)
    assert grid.to_index(grid.to_seconds(np.arange(5))) == pytest.approx(np.arange(5))
    # ActionFormer: index of time t is (t * fps - num_frames / 2) / stride
    assert grid.to_index(11.4) == pytest.approx((11.4 * 30 - 8) / 4)
    labels = snippet_labels(video, 100, grid)
    inside = (centers >= 0.2) & (centers <= 1.1)
    assert labels.action[inside].all() and labels.action.sum() > inside.sum()
    assert labels.label[np.flatnonzero(inside)[0]] == 5 and (labels.label[~labels.action] == -1).all()
    assert set(labels.label[labels.action].tolist()) == {5, 6}  # CricketBowling, CricketShot


def test_rescaled_grid_and_snippet_labels_pick_shortest_overlap():
    video = VideoAnnotation(
        "v", "validation", 100.0, None,
        [Segment(0.0, 60.0, "long", 0), Segment(20.0, 30.0, "short", 1), Segment(80.0, 90.0, "Ambiguous", None, True)],
    )
    grid = grid_for(video, 10)  # no stride: 10 snippets over 100 s, centres 5, 15, ..., 95
    assert grid.centers(10) == pytest.approx(np.arange(5, 100, 10))
    labels = snippet_labels(video, 10)
    assert labels.label.tolist() == [0, 0, 1, 0, 0, 0, -1, -1, -1, -1]
    assert labels.ambiguous.tolist() == [False] * 8 + [True, False]
    assert not labels.action[8]
    with pytest.raises(AnnotationError, match="duration unknown"):
        grid_for(VideoAnnotation("x", "", float("nan"), 30.0, []), 10)
    assert SnippetGrid.rescaled(124.23, 100).to_index(124.23) == pytest.approx(99.5)


def test_synthetic_json_with_stride_keys(tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps({"database": {"vid0": {
        "subset": "training", "duration": 32.0, "fps": 8.0, "feat_stride": 16, "num_frames": 16,
        "annotations": [{"label": "a", "label_id": 0, "segment": [4.0, 8.0]}]}}}))
    video = load_annotations(path)["vid0"]
    assert (video.feat_stride, video.num_frames) == (16, 16)
    labels = snippet_labels(video, 16)  # centres (i * 16 + 8) / 8 = 2i + 1 s
    assert np.flatnonzero(labels.action).tolist() == [2, 3]


def test_match_ids_reports_both_misses_and_strict_fails():
    result = match_ids(["v_a", "v_b", "c", "extra"], ["a", "b", "v_c", "lonely"])
    assert result.pairs == {"v_a": "a", "v_b": "b", "c": "v_c"}
    assert result.features_without_annotation == ["extra"]
    assert result.annotations_without_features == ["lonely"]
    assert "1 with features but no annotation (extra)" in result.summary()
    with pytest.raises(AnnotationError, match="--strict.*lonely"):
        match_ids(["v_a", "extra"], ["a", "lonely"], strict=True)
    with pytest.raises(AnnotationError, match="duplicate video ids in the features"):
        match_ids(["v_a", "a"], ["a"])


@pytest.mark.parametrize(
    "content, match",
    [
        ('{"database": {"a": {"subset": "x", "duration": 10, "annotations": [{"segment": [5, 2], "label": "l"}]}}}',
         "ends before it starts"),
        ('{"database": {"a": {"subset": "x", "duration": 10}, "a": {"subset": "y", "duration": 3}}}',
         "duplicate key"),
        ('{"database": {"a": {"subset": "x", "duration": 10, "annotations": [{"segment": [1, "x"], "label": "l"}]}}}',
         "not a number"),
        ('{"database": {"a": {"subset": "x", "duration": 10, "annotations": [{"segment": [1], "label": "l"}]}}}',
         r"must be \[start, end\]"),
        ('{"database": {"a": ', "not valid JSON"),
    ],
)
def test_bad_json_gives_one_clear_error(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=match) as info:
        load_annotations(path)
    assert str(path) in str(info.value)


def test_bad_csv_errors(tmp_path):
    path = tmp_path / "gtad_val.csv"
    path.write_text("video,type,type_idx,start,end,startFrame,endFrame\nv1,Jump,1,abc,2.0,0,60\n")
    with pytest.raises(AnnotationError, match="line 2.*'abc' is not a number"):
        load_annotations(path)
    path.write_text("name,when\nv1,3\n")
    with pytest.raises(AnnotationError, match="unrecognised annotation CSV header"):
        load_annotations(path)
    with pytest.raises(AnnotationError, match="does not exist"):
        load_annotations(tmp_path / "missing.json")


# -- the format registry --------------------------------------------------------------------------
@pytest.fixture
def scratch_format():
    """Register annotation formats for one test and remove them afterwards."""
    added: list[str] = []

    def register(name: str, read, **fields):
        added.append(name)
        return register_format(name, **fields)(read)

    yield register
    for name in added:
        FORMATS.pop(name)


def _read_lines(path, metadata):
    """`video start end label` per line."""
    videos = {}
    for line in path.read_text().splitlines()[1:]:
        video_id, start, end, label = line.split()
        video = videos.setdefault(video_id, VideoAnnotation(video_id, "validation", math.nan, None, []))
        video.segments.append(Segment(float(start), float(end), label))
    return videos


def test_builtin_formats_are_registered_in_order_and_offered_by_the_cli():
    assert list(FORMATS) == ["activitynet", "gtad", "tsp", "bsn"]
    assert FORMATS["tsp"].read.__name__ == "_read_tsp" and FORMATS["bsn"].sibling == "video_info"
    parser = argparse.ArgumentParser()
    add_annotation_arguments(parser)
    choices = next(a.choices for a in parser._actions if a.dest == "annotation_format")
    assert choices == list(FORMATS)


def test_a_registered_format_is_detected_read_and_selectable(tmp_path, scratch_format):
    scratch_format("lines", _read_lines, suffixes=(".txt",), detect=lambda p: p.read_text().startswith("# lines"),
                   title="lines TXT", shape="# lines, then: video start end label", sibling="meta")
    path = tmp_path / "val_lines.txt"
    path.write_text("# lines\nv1 1.0 2.5 jump\nv1 4.0 5.0 run\nv2 0.5 1.0 jump\n")
    (tmp_path / "val_meta.csv").write_text("video,duration,fps\nv1,10.0,25\nv2,3.0,30\n")  # found beside it
    assert detect_format(path) == "lines"
    ann = load_annotations(path)
    assert ann["v1"].duration == 10.0 and ann["v2"].fps == 30.0  # metadata merged after the read
    assert ann.labels() == ["jump", "run"] and ann["v1"].segments[1].label_id == 1
    parser = argparse.ArgumentParser()
    add_annotation_arguments(parser)
    args = parser.parse_args(["--annotations", str(path), "--annotation-format", "lines"])
    assert annotations_from_args(args).num_segments() == 3
    assert "lines TXT" in parser.format_help()
    (tmp_path / "other.txt").write_text("something else\n")
    with pytest.raises(AnnotationError, match=r"unrecognised annotation TXT; expected lines TXT \(# lines, then"):
        detect_format(tmp_path / "other.txt")


def test_detection_refuses_two_matching_formats_and_unknown_suffixes(tmp_path, scratch_format):
    path = tmp_path / "a.csv"
    path.write_text("video,type,start,end\nv1,Jump,1.0,2.0\n")
    assert detect_format(path) == "gtad"
    scratch_format("greedy", lambda path, metadata: {}, suffixes=(".csv",), detect=lambda p: True, title="greedy CSV", shape="anything")
    several = r"looks like several annotation formats \(gtad, greedy\).*--annotation-format"
    with pytest.raises(AnnotationError, match=several):
        detect_format(path)
    assert load_annotations(path, fmt="gtad").num_segments() == 1  # forcing one still works
    with pytest.raises(AnnotationError, match=r"unknown annotation file type '\.xml'; expected \.json or \.csv"):
        detect_format(tmp_path / "a.xml")


def test_bsn_video_info_csv_is_named_as_metadata(tmp_path):
    path = tmp_path / "video_info_new.csv"
    path.write_text("video,numFrame,seconds,fps,rfps,subset,featureFrame\nv_a,100,4.0,25,25,training,96\n")
    with pytest.raises(AnnotationError, match="is a BSN video_info CSV.*--metadata"):
        load_annotations(path)
