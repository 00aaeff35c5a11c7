"""`sola inspect` on real fixtures, two-stream input and annotation id matching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sola.cli import main
from sola.data.stores.hdf5 import Hdf5Writer
from sola.data.stores.npy import NpyWriter

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent (real fixtures)")


@needs_data
def test_inspect_real_i3d_store_with_its_ground_truth(capsys):
    folder = DATA / "features" / "i3d_2048_two_stream"
    assert main(["inspect", str(folder), "--annotations", str(folder / "gt.json"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "layout:       npy" in out and "videos:       2" in out and "feature dim:  2048" in out
    assert "dtype:        float64" in out and "length:       min 89 / median 126.5 / max 164" in out
    assert "2 videos matched; 0 with features but no annotation; 1 annotated without features (golf)" in out
    assert main(["inspect", str(folder), "--annotations", str(folder / "gt.json"), "--strict", "--quiet"]) == 1


@needs_data
def test_inspect_matches_v_prefixed_features_to_bare_annotation_ids(tmp_path, capsys):
    tsn = np.load(DATA / "features" / "anet_tsn_100x400" / "v_4Lu8ECLHvK4.npy")
    writer = Hdf5Writer(tmp_path / "anet.h5")
    writer.write("v_4Lu8ECLHvK4", tsn)
    writer.close()
    tsp = DATA / "annotations" / "activitynet" / "tsp_activitynet_v1-3_valid_tsp_groundtruth.csv"
    assert main(["inspect", str(tmp_path / "anet.h5"), "--annotations", str(tsp), "--quiet"]) == 0  # kept, said
    assert "kept 4 segment(s) outside their video as written (--bad-segments keep" in capsys.readouterr().err
    refused = ["--bad-segments", "error", "--quiet"]
    assert main(["inspect", str(tmp_path / "anet.h5"), "--annotations", str(tsp), *refused]) == 2
    assert "lies outside the video" in capsys.readouterr().err
    clipped = ["--bad-segments", "clip", "--quiet"]
    assert main(["inspect", str(tmp_path / "anet.h5"), "--annotations", str(tsp), *clipped]) == 0
    out = capsys.readouterr().out
    assert "layout:       hdf5" in out and "1 videos matched; 0 with features but no annotation" in out


def test_inspect_two_stream(tmp_path, capsys):
    NpyWriter(tmp_path / "rgb").write("a", np.zeros((10, 3), np.float32))
    NpyWriter(tmp_path / "flow").write("a", np.ones((9, 5), np.float32))
    assert main(["inspect", str(tmp_path / "rgb"), "--flow", str(tmp_path / "flow"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "layout:       twostream" in out and "feature dim:  8" in out and "max 10 snippets" in out
    assert main(["inspect", str(tmp_path), "--quiet"]) == 0  # DIR/rgb + DIR/flow is detected
    NpyWriter(tmp_path / "flow").write("a", np.ones((2, 5), np.float32))
    assert main(["inspect", str(tmp_path), "--quiet"]) == 1
    assert "RGB has 10 snippets but flow 2" in capsys.readouterr().out
