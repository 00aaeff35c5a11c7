"""Linear probe: boundary snippets, AP, a separable case for both protocols, determinism, CLI."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sola.cli import main
from sola.core.errors import AnnotationError, ConfigError
from sola.data.annotations import load_annotations
from sola.data.stores import open_store
from sola.evaluate.probe import (ProbeConfig, average_precision, binary_metrics, boundary_mask, build_matrix,
                                 collect_snippets, compare_probe, format_probe_table, reference_probe, subsample_note,
                                 subsample_summary)

LENGTH, DIM = 60, 8
SEGMENTS = ((20, 40),)  # seconds == snippets: fps 1, one frame per snippet


def make_toy(root: Path, videos=(("training", 6), ("validation", 4)), flip: int = 1, seed: int = 0):
    """A store + annotations where action snippets point along e0 and background along e1.

    The `flip` snippets on each side of every transition carry the other class's direction, so a
    good probe gets exactly those wrong. Snippet i is centred at i + 0.5 s.
    """
    rng = np.random.default_rng(seed)
    features_dir = root / "features"
    features_dir.mkdir(parents=True)
    database = {}
    for subset, count in videos:
        for n in range(count):
            video_id = f"{subset}_{n}"
            action = np.zeros(LENGTH, dtype=bool)
            for start, end in SEGMENTS:
                action[start:end] = True
            shown = action.copy()
            for start, end in SEGMENTS:
                for edge in (start, end):
                    shown[edge - flip : edge + flip] = ~shown[edge - flip : edge + flip]
            x = rng.normal(0, 0.05, (LENGTH, DIM))
            x[shown, 0] += 1.0
            x[~shown, 1] += 1.0
            np.save(features_dir / f"{video_id}.npy", x)
            database[video_id] = {
                "subset": subset, "duration": float(LENGTH), "fps": 1.0, "feat_stride": 1, "num_frames": 1,
                "annotations": [{"label": "act", "segment": [float(s), float(e)], "label_id": 0} for s, e in SEGMENTS],
            }
    (root / "annotations.json").write_text(json.dumps({"version": "toy", "database": database}))
    return open_store(features_dir), load_annotations(root / "annotations.json")


def boundary(k: int) -> ProbeConfig:
    """The default probe config with `data.boundary_k` = k."""
    return ProbeConfig.from_dict({"data": {"boundary_k": k}})


def test_boundary_mask_marks_k_snippets_on_each_side():
    action = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0], dtype=bool)
    assert boundary_mask(action, 1).astype(int).tolist() == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0]
    assert boundary_mask(action, 2).astype(int).tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    # An action touching the video's start has no transition there.
    assert boundary_mask(np.array([1, 1, 0, 0, 0], dtype=bool), 1).astype(int).tolist() == [0, 1, 1, 0, 0]
    assert not boundary_mask(np.ones(5, dtype=bool), 2).any()


def test_average_precision_by_hand():
    # Ranked: pos, neg, pos -> precision 1 at recall 1/2, 2/3 at recall 1 -> AP 5/6.
    assert average_precision(np.array([0.9, 0.5, 0.1]), np.array([1, 0, 1], bool)) == pytest.approx(5 / 6)
    # A tie between a positive and a negative counts as one threshold: precision 1/2.
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0], bool)) == pytest.approx(0.5)
    assert math.isnan(average_precision(np.array([0.3]), np.array([False])))


def test_binary_metrics_by_hand():
    scores = torch.tensor([2.0, -1.0, 0.5, -0.5, 1.0, -2.0])
    action = torch.tensor([True, True, False, False, True, False])
    boundary = torch.tensor([False, True, True, False, False, False])
    metrics = binary_metrics(scores, action, boundary)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["balanced_accuracy"] == pytest.approx(0.5 * (2 / 3 + 2 / 3))
    assert metrics["boundary_accuracy"] == 0.0  # both boundary snippets are the wrong ones


def test_probe_learns_a_separable_case_and_counts_boundary_snippets(tmp_path):
    store, annotations = make_toy(tmp_path, flip=1)
    table = compare_probe(store, annotations, seed=0, config=boundary(1))
    row = table["rows"]["baseline"]
    assert (table["train_subset"], table["val_subset"]) == ("training", "validation")
    # 4 of 60 snippets per video carry the other class's direction: a fitted probe gets exactly
    # them wrong, and +-1 around each transition is exactly those snippets.
    assert row["lbfgs_accuracy"] == pytest.approx(56 / 60)
    assert row["lbfgs_boundary_accuracy"] == 0.0
    # The reference protocol (32 SGD steps on this small set) is still learning over epochs 6-15 ...
    assert 0.85 < row["sgd_accuracy"] < 56 / 60
    assert row["sgd_boundary_accuracy"] < 0.2
    # ... and reaches the same rule by its last epoch.
    data = collect_snippets(store, annotations, config=boundary(1))
    reference = reference_probe(build_matrix(data.train), build_matrix(data.val), seed=0)
    assert reference["per_epoch_accuracy"][-1] == pytest.approx(56 / 60)
    assert len(reference["per_epoch_accuracy"]) == 16
    assert row["lbfgs_average_precision"] > 0.8  # chance would be the action share, 1/3
    wider = compare_probe(store, annotations, seed=0, config=boundary(2))["rows"]["baseline"]
    assert wider["lbfgs_boundary_accuracy"] == pytest.approx(0.5)
    assert row["val_snippets"] == 4 * LENGTH and row["train_snippets"] == 6 * LENGTH
    assert "baseline" in format_probe_table(table)


def test_same_seed_same_numbers_and_identity_adapter_equals_baseline(tmp_path):
    from sola.adapt.adapter import SoLaAdapter

    store, annotations = make_toy(tmp_path, flip=0)
    torch.manual_seed(1)
    identity = SoLaAdapter(DIM, 16)  # gate tanh(0) = 0: the identity
    first = compare_probe(store, annotations, adapter=identity, seed=3)
    again = compare_probe(store, annotations, adapter=identity, seed=3)
    assert first == again
    assert first["rows"]["SoLa"] == first["rows"]["baseline"]


def test_thumos_style_subsets_train_on_validation(tmp_path):
    store, annotations = make_toy(tmp_path, videos=(("Validation", 3), ("Test", 2)))
    data = collect_snippets(store, annotations)
    assert (data.train_subset, data.val_subset) == ("validation", "test")
    assert len(data.train.video_ids) == 3 and len(data.val.video_ids) == 2


def test_missing_split_is_an_error(tmp_path):
    store, annotations = make_toy(tmp_path, videos=(("training", 3),))
    with pytest.raises(AnnotationError, match="--train-subset"):
        collect_snippets(store, annotations)


def test_probe_command(tmp_path, capsys):
    from sola.adapt.adapter import SoLaAdapter, save_adapter

    make_toy(tmp_path)
    adapter_file = save_adapter(SoLaAdapter(DIM, 16), tmp_path / "adapter.safetensors")
    out = tmp_path / "probe.json"
    code = main(["probe", str(tmp_path / "features"), "--annotations", str(tmp_path / "annotations.json"),
                 "--adapter", str(adapter_file), "--json", str(out), "--quiet", "--device", "cpu"])
    assert code == 0
    table = json.loads(out.read_text())
    assert set(table["rows"]) == {"baseline", "SoLa"}
    assert "SoLa" in capsys.readouterr().out
    # --adapted: a store already transformed (here the same features: the rows agree).
    code = main(["probe", str(tmp_path / "features"), "--annotations", str(tmp_path / "annotations.json"),
                 "--adapted", str(tmp_path / "features"), "--json", str(out), "--quiet"])
    rows = json.loads(out.read_text())["rows"]
    assert code == 0 and rows["SoLa"] == rows["baseline"]
    capsys.readouterr()
    code = main(["probe", str(tmp_path / "features"), "--annotations", str(tmp_path / "annotations.json"),
                 "--val-subset", "nonexistent", "--train-subset", "training", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nonexistent" in err


def test_sgd_epoch_equals_torch_sgd_with_autograd():
    from sola.evaluate.probe import sgd_epoch

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(700, 5, generator=generator)
    target = (torch.rand(700, generator=generator) > 0.6).long()
    weight, bias = torch.randn(2, 5, generator=generator), torch.randn(2, generator=generator)
    mine_w, mine_b, state = weight.clone(), bias.clone(), {}
    ref_w, ref_b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
    optimizer = torch.optim.SGD([ref_w, ref_b], lr=0.01, momentum=0.9)
    for _ in range(3):  # epochs of 3 batches (256, 256, 188): momentum carries over
        sgd_epoch(x, target, mine_w, mine_b, 0.01, 0.9, 256, state)
        for first in range(0, 700, 256):
            loss = torch.nn.functional.cross_entropy(x[first : first + 256] @ ref_w.T + ref_b, target[first : first + 256])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    torch.testing.assert_close(mine_w, ref_w.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(mine_b, ref_b.detach(), rtol=1e-5, atol=1e-6)


def test_an_adapted_store_gives_the_same_row_as_its_adapter(tmp_path):
    from sola.adapt.adapter import SoLaAdapter
    from sola.adapt.transform import apply_adapter

    store, annotations = make_toy(tmp_path, flip=0)
    torch.manual_seed(0)
    adapter = SoLaAdapter(DIM, 16)
    with torch.no_grad():
        adapter.alpha.fill_(1.0)
    adapted_dir = tmp_path / "adapted"
    adapted_dir.mkdir()
    for video_id in store.video_ids():
        np.save(adapted_dir / f"{video_id}.npy", apply_adapter(adapter, store.read(video_id).astype(np.float32)))
    by_adapter = compare_probe(store, annotations, adapter=adapter, seed=0)["rows"]["SoLa"]
    by_store = compare_probe(store, annotations, adapted_store=open_store(adapted_dir), seed=0)["rows"]["SoLa"]
    assert by_store == pytest.approx(by_adapter)
    assert by_store != compare_probe(store, annotations, seed=0)["rows"]["baseline"]


def test_probe_config_defaults_are_the_reference_protocol(tmp_path):
    config = ProbeConfig()
    assert config.sections() == ["data", "sgd", "lbfgs", "select"]
    sgd, lbfgs, data, select = config.sgd, config.lbfgs, config.data, config.select
    assert (sgd.epochs, sgd.lr, sgd.momentum, sgd.batch_size, sgd.report_from) == (16, 0.01, 0.9, 256, 6)
    assert (lbfgs.max_iter, lbfgs.l2, lbfgs.history_size) == (500, 1e-4, 20)
    assert (data.boundary_k, data.holdout, data.seed) == (2, 0.25, 0)
    assert data.feat_stride is data.num_frames is data.fps is None  # from the annotations
    assert (select.metric, select.min_gain) == ("lbfgs_balanced_accuracy", 0.0)
    config.save(tmp_path / "probe.yaml")
    assert ProbeConfig.load(tmp_path / "probe.yaml") == config
    with pytest.raises(ConfigError, match="unknown key sgd.epoch; known keys"):
        ProbeConfig.from_dict({"sgd": {"epoch": 3}})
    for key, value in [("sgd.lr", 0.0), ("sgd.momentum", 1.0), ("data.holdout", 1.0), ("data.fps", -1.0),
                       ("data.boundary_k", 0), ("lbfgs.max_iter", 0), ("select.min_gain", float("nan"))]:
        with pytest.raises(ConfigError, match=f"^--set: {key} "):
            ProbeConfig.load(None, {key: value})


def test_seed_argument_replaces_the_config_seed_and_defaults_are_the_config(tmp_path):
    store, annotations = make_toy(tmp_path, flip=1)
    default = compare_probe(store, annotations)
    assert compare_probe(store, annotations, config=ProbeConfig()) == default
    seeded = ProbeConfig.from_dict({"data": {"seed": 4}})
    assert compare_probe(store, annotations, seed=4) == compare_probe(store, annotations, config=seeded)
    assert default["config"] == ProbeConfig().to_dict() and default["seed"] == 0


def test_probe_command_reads_config_and_set(tmp_path, capsys):
    store, annotations = make_toy(tmp_path, flip=1)
    base = ["probe", str(tmp_path / "features"), "--annotations", str(tmp_path / "annotations.json"), "--quiet",
            "--device", "cpu"]
    short = ProbeConfig.from_dict({"sgd": {"epochs": 3, "report_from": 1}, "data": {"boundary_k": 1}})
    expected = compare_probe(store, annotations, config=short, device="cpu")["rows"]["baseline"]
    assert expected["sgd_accuracy"] != compare_probe(store, annotations, config=boundary(1))["rows"]["baseline"][
        "sgd_accuracy"]  # 3 epochs are not 16: the key must reach the probe to give these numbers
    out = tmp_path / "probe.json"
    # --set, and a named flag that wins over it
    assert main([*base, "--set", "sgd.epochs=3", "--set", "sgd.report_from=1", "--set", "data.boundary_k=2",
                 "--boundary-k", "1", "--json", str(out)]) == 0
    table = json.loads(out.read_text())
    assert table["rows"]["baseline"] == pytest.approx(expected, nan_ok=True)
    assert table["config"]["sgd"]["epochs"] == 3 and table["boundary_k"] == 1
    assert "mean of epochs 1-2" in capsys.readouterr().out
    # the same from a YAML file
    (tmp_path / "probe.yaml").write_text("sgd:\n  epochs: 3\n  report_from: 1\ndata:\n  boundary_k: 1\n")
    assert main([*base, "--config", str(tmp_path / "probe.yaml"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["rows"]["baseline"] == pytest.approx(expected, nan_ok=True)
    capsys.readouterr()
    # a bad key or value: one line naming it, exit 2
    for args, says in [(["--set", "sgd.epoch=3"], "unknown key sgd.epoch"),
                       (["--set", "probe.epochs=3"], "unknown section 'probe'"),
                       (["--set", "sgd.lr=-1"], "sgd.lr must be"),
                       (["--set", "select.metric=loss"], "select.metric")]:
        assert main([*base, *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and says in err, err
    (tmp_path / "bad.yaml").write_text("sgd:\n  epoch: 3\n")
    assert main([*base, "--config", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.yaml: unknown key sgd.epoch" in err


# -- bounded memory: a plan of rows, read one video at a time; seeded, reported subsamples ---------------------


def probe_with(**data) -> ProbeConfig:
    """The default probe config with these `data` keys."""
    return ProbeConfig.from_dict({"data": data}).validate()


class NoReads:
    """A store that answers shapes but refuses to read features (planning must not read)."""

    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def read(self, video_id):
        raise AssertionError(f"planning read the features of {video_id}")


def test_default_plan_holds_every_usable_snippet_and_reads_no_features(tmp_path):
    store, annotations = make_toy(tmp_path)
    data = collect_snippets(NoReads(store), annotations)
    assert data.train.num_snippets == data.train.available == 6 * LENGTH
    assert all(np.array_equal(rows, np.arange(LENGTH)) for rows in data.train.rows)
    # The matrix is every snippet of every video in order, L2-normalised per snippet.
    x, action, _ = build_matrix(dataclasses.replace(data.val, store=store))
    full = np.concatenate([np.load(tmp_path / "features" / f"validation_{n}.npy") for n in range(4)])
    torch.testing.assert_close(x, torch.nn.functional.normalize(torch.from_numpy(full).float(), dim=1))
    assert action.sum() == 4 * 20


def test_max_snippets_caps_each_split_with_a_seeded_uniform_draw(tmp_path):
    store, annotations = make_toy(tmp_path)
    data = collect_snippets(store, annotations, config=probe_with(max_snippets=100))
    assert data.train.num_snippets == 100 and data.val.num_snippets == 100
    assert data.train.available == 6 * LENGTH
    assert len(data.train.video_ids) == 6  # the draw is over snippets, every video keeps its share
    again = collect_snippets(store, annotations, config=probe_with(max_snippets=100))
    other = collect_snippets(store, annotations, config=probe_with(max_snippets=100, seed=1))
    same = [np.array_equal(a, b) for a, b in zip(data.train.rows, again.train.rows)]
    assert all(same)
    assert not all(np.array_equal(a, b) for a, b in zip(data.train.rows, other.train.rows))
    # Targets follow their rows: action snippets are 20..39 of every toy video.
    for rows, action in zip(data.train.rows, data.train.action):
        assert np.array_equal(action, (rows >= 20) & (rows < 40))
    table = compare_probe(store, annotations, config=probe_with(max_snippets=100))
    assert table["subsample"]["train"] == {"videos": 6, "videos_available": 6, "snippets": 100,
                                           "snippets_available": 360, "cap": 100}
    assert table["rows"]["baseline"]["train_snippets"] == 100
    assert "train 100 of 360 snippets in 6 of 6 videos (capped at 100)" in format_probe_table(table)
    assert "subsampled" not in format_probe_table(compare_probe(store, annotations))


def test_chunk_draws_one_snippet_per_chunk_and_videos_a_share_of_videos(tmp_path):
    store, annotations = make_toy(tmp_path)
    data = collect_snippets(store, annotations, config=probe_with(chunk=7))
    for rows in data.train.rows:
        assert np.array_equal(rows // 7, np.arange(math.ceil(LENGTH / 7)))  # one in each chunk, in order
    assert len({tuple(r) for r in data.train.rows}) > 1  # drawn at random, not the chunk's first
    half = collect_snippets(store, annotations, config=probe_with(videos=0.5))
    assert len(half.train.video_ids) == 3 and half.train.videos_available == 6
    assert len(half.val.video_ids) == 2
    assert set(half.train.video_ids) <= {f"training_{n}" for n in range(6)}
    table = compare_probe(store, annotations, config=probe_with(videos=0.5))
    assert "in 3 of 6 videos" in format_probe_table(table)


@pytest.mark.parametrize("key, value", [("videos", 0.0), ("videos", 1.5), ("chunk", 0), ("max_snippets", -1),
                                        ("max_bytes", -1)])
def test_bad_subsample_settings_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"data.{key}"):
        probe_with(**{key: value})


def test_sgd_epoch_in_an_order_equals_it_on_the_shuffled_copy():
    from sola.evaluate.probe import sgd_epoch

    generator = torch.Generator().manual_seed(3)
    x = torch.randn(600, 4, generator=generator)
    target = (torch.rand(600, generator=generator) > 0.5).long()
    order = torch.randperm(600, generator=generator)
    start_w, start_b = torch.randn(2, 4, generator=generator), torch.zeros(2)
    copied = (start_w.clone(), start_b.clone(), {})
    indexed = (start_w.clone(), start_b.clone(), {})
    sgd_epoch(x[order], target[order], copied[0], copied[1], 0.01, 0.9, 256, copied[2])
    sgd_epoch(x, target, indexed[0], indexed[1], 0.01, 0.9, 256, indexed[2], order)
    assert torch.equal(copied[0], indexed[0]) and torch.equal(copied[1], indexed[1])


def test_an_adapted_store_of_other_lengths_is_refused(tmp_path):
    store, annotations = make_toy(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    for path in (tmp_path / "features").glob("*.npy"):
        np.save(other / path.name, np.load(path)[:-1])  # one snippet short
    with pytest.raises(AnnotationError, match="another length"):
        compare_probe(store, annotations, adapted_store=open_store(other))


def test_probe_command_max_snippets(tmp_path, capsys):
    make_toy(tmp_path)
    code = main(["probe", str(tmp_path / "features"), "--annotations", str(tmp_path / "annotations.json"),
                 "--max-snippets", "50", "--quiet"])
    assert code == 0 and "train 50 of 360 snippets" in capsys.readouterr().out


class WideShapes:
    """A store of `videos` x `length` snippets of width `dim` that answers shapes only (a plan never reads)."""

    def __init__(self, videos: int, length: int, dim: int):
        self.ids, self.length, self.width, self.path = [f"v{n:04d}" for n in range(videos)], length, dim, Path("wide")

    def video_ids(self):
        return list(self.ids)

    def shape(self, video_id):
        return (self.length, self.width)

    def dim(self):
        return self.width


def wide_annotations(store: WideShapes, tmp_path: Path):
    database = {v: {"subset": "training" if n % 4 else "validation", "duration": float(store.length), "fps": 1.0,
                    "feat_stride": 1, "num_frames": 1, "annotations": [{"label": "act", "segment": [10.0, 60.0]}]}
                for n, v in enumerate(store.ids)}
    (tmp_path / "wide.json").write_text(json.dumps({"database": database}))
    return load_annotations(tmp_path / "wide.json")


def test_default_cap_bounds_the_matrices_in_bytes_whatever_the_width(tmp_path):
    # 400 videos x 1,000 x 2048: a 3.3 GB store. The snippet cap alone (400,000) let the probe hold all of it.
    store = WideShapes(400, 1000, 2048)
    data = collect_snippets(store, wide_annotations(store, tmp_path))
    assert data.train.available == 300_000 and data.val.available == 100_000
    assert data.train.num_snippets == data.val.num_snippets == 750_000_000 // (4 * 2048) == 91_552
    assert (data.train.num_snippets + data.val.num_snippets) * 2048 * 4 <= 1.5e9
    summary = subsample_summary(data)
    assert summary["train"]["cap"] == 91_552
    note = subsample_note(summary, 0)
    assert "train 91,552 of 300,000 snippets in 300 of 300 videos (capped at 91,552)" in note and "data.max_bytes" in note
    # Narrow features keep the snippet cap; 0 turns the byte cap off.
    narrow = WideShapes(400, 1000, 256)
    assert collect_snippets(narrow, wide_annotations(narrow, tmp_path)).train.num_snippets == 300_000
    unbounded = collect_snippets(store, wide_annotations(store, tmp_path), config=probe_with(max_bytes=0))
    assert unbounded.train.num_snippets == 300_000


def test_a_set_under_the_byte_cap_gives_the_numbers_of_no_cap(tmp_path):
    store, annotations = make_toy(tmp_path)
    capped = compare_probe(store, annotations)
    free = compare_probe(store, annotations, config=probe_with(max_bytes=0, max_snippets=0))
    assert capped["rows"] == free["rows"] and "subsampled" not in format_probe_table(capped)
