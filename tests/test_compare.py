import json
from pathlib import Path
import os

import numpy as np
import pytest

from sola.core.config import load_config
from sola.core.errors import ConfigError
from sola.data.annotations import load_annotations
from sola.data.stores import open_store
from sola.experiments.compare import compare, format_markdown, parse_modes
from sola.tal.config import load_tal_config
from tests.hostile import snapshot

TINY_TAL = {"train.epochs": 1, "train.warmup_epochs": 1, "model.embd_dim": 16, "model.head_dim": 16}
TINY_SOLA = {"adapter.hidden_dim": 16, "matching.projector_dim": 16, "fit.epochs": 1, "fit.batch_size": 16}


def test_parse_modes():
    assert parse_modes("baseline, sola") == ["baseline", "sola"]
    for bad in ("baseline,foo", "", "sola,sola"):
        with pytest.raises(ConfigError, match="--modes"):
            parse_modes(bad)


@pytest.mark.slow
def test_compare_every_mode_over_seeds_and_resume(synthetic_small, tmp_path, monkeypatch):
    store = open_store(synthetic_small / "features")
    annotations = load_annotations(synthetic_small / "annotations.json")
    tal = load_tal_config("tal_synthetic_cpu", TINY_TAL)
    sola_config = load_config(None, TINY_SOLA)
    modes = ["baseline", "sola", "unified", "unified+sm"]
    # select=False: the run's final adapter, so the transformed store is exercised (selection: below)
    table = compare(store, annotations, tal, tmp_path / "cmp", modes=modes, seeds=2, sola_config=sola_config,
                    progress=False, log=lambda s: None, select=False)
    assert table["modes"] == modes and not table["sola_adapter"]["selected"]
    baseline, adapted = table["rows"]["baseline"], table["rows"]["sola"]
    assert baseline["seeds"] == [0, 1] and list(baseline["mAP_mean"]) == ["0.30", "0.40", "0.50", "0.60", "0.70"]
    runs = [json.loads((tmp_path / "cmp" / "results" / f"baseline_seed{s}.json").read_text()) for s in (0, 1)]
    for mode in modes:  # kept for reports: per-class AP and the predictions of every (mode, seed)
        assert set(json.loads((tmp_path / "cmp" / "results" / f"{mode}_seed0.json").read_text())["per_class"]) == set(
            annotations.labels())
        assert json.loads((tmp_path / "cmp" / "results" / f"{mode}_seed1.predictions.json").read_text())["results"]
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["annotations"] == str(
        (synthetic_small / "annotations.json").resolve())
    assert baseline["average_mAP_mean"] == pytest.approx(np.mean([r["average_mAP"] for r in runs]))
    assert baseline["average_mAP_std"] == pytest.approx(np.std([r["average_mAP"] for r in runs]))
    assert baseline["probe_accuracy"] is not None and adapted["probe_balanced_accuracy"] is not None
    assert table["rows"]["unified"]["probe_accuracy"] is None
    assert (tmp_path / "cmp" / "sola_run" / "adapter.safetensors").is_file()
    assert len(list((tmp_path / "cmp" / "sola_features").glob("*.npy"))) == 24
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert markdown == format_markdown(table) and "| unified+sm |" in markdown and "±" in markdown

    # Finished (mode, seed) results are reused: nothing is trained again.
    import sola.experiments.compare

    monkeypatch.setattr(sola.experiments.compare, "run_experiment", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = compare(store, annotations, tal, tmp_path / "cmp", modes=modes, seeds=2, sola_config=sola_config,
                    progress=False, log=lambda s: None, select=False)
    assert again == table


def test_compare_cli_rejects_bad_modes(synthetic_small, capsys):
    from sola.cli import main

    code = main(["compare", str(synthetic_small / "features"), "--annotations",
                 str(synthetic_small / "annotations.json"), "--config", "tal_synthetic_cpu", "--modes", "nope"])
    assert code == 2 and "--modes" in capsys.readouterr().err


def fake_experiment(calls):
    """A stand-in for `sola.experiments.compare.run_experiment` that records the features of each call (in mode order)."""

    def run(features, annotations, config, seed=0, **kwargs):
        calls.append(features)
        return {"mAP": {"0.50": 0.5}, "average_mAP": 0.5, "seconds_per_epoch": 0.1, "seed": seed,
                "scoring": "multi-class detection", "mode": "baseline"}

    return run


def scrambled_run(root, dim):
    """A run directory whose checkpoints (and final adapter) drown the features in a random residual."""
    import torch

    from sola.adapt.adapter import SoLaAdapter, save_adapter

    torch.manual_seed(0)
    run = root / "scrambled_run"
    for epoch in (5, 10):
        adapter = SoLaAdapter(dim, 8)
        with torch.no_grad():
            adapter.alpha.fill_(3.0)
            adapter.out.weight.mul_(200.0)
            adapter.out.bias.normal_(0, 50.0)
        save_adapter(adapter, run / "checkpoints" / f"epoch_{epoch:04d}.safetensors", {"epoch": epoch})
    save_adapter(adapter, run / "adapter.safetensors")
    return run


def test_compare_selects_by_default_and_records_the_winner(synthetic_small, tmp_path, monkeypatch):
    import sola.experiments.compare

    calls = []
    monkeypatch.setattr(sola.experiments.compare, "run_experiment", fake_experiment(calls))
    store = open_store(synthetic_small / "features")
    annotations = load_annotations(synthetic_small / "annotations.json")
    tal = load_tal_config("tal_synthetic_cpu", TINY_TAL)
    sola_config = load_config(None, {**TINY_SOLA, "fit.epochs": 2, "fit.checkpoint_every": 1})
    out = tmp_path / "cmp"
    table = compare(store, annotations, tal, out, seeds=1, sola_config=sola_config, probe=False,
                    progress=False, log=lambda s: None)
    used = table["sola_adapter"]
    selection = json.loads((out / "sola_run" / "select.json").read_text())
    assert used["selected"] and used["best"] == selection["best"] and used["message"] == selection["message"]
    assert selection["subset"] == "training" and selection["checkpoints"][-2:] == ["epoch_0001", "epoch_0002"]
    assert set(selection["rows"]) == {"identity", "epoch_0001", "epoch_0002"}  # epoch 0 (if saved) is the identity
    assert all(annotations[v].subset == "training" for v in selection["heldout_videos"])
    assert json.loads((out / "compare.json").read_text())["sola_adapter"] == used
    assert used["message"] in format_markdown(table)
    if used["best"] == "identity":  # the sola features are the originals: the baseline's head is reused
        assert len(calls) == 1 and not (out / "sola_features").exists()
    else:
        trained_on = calls[1]
        assert trained_on.path == out / "sola_features" and used["features"] == str(out / "sola_features")
    # A rerun reuses the selection and every result.
    monkeypatch.setattr(sola.experiments.compare, "run_experiment", lambda *a, **k: pytest.fail("retrained a finished run"))
    import sola.evaluate.select

    monkeypatch.setattr(sola.evaluate.select, "probe_features", lambda *a, **k: pytest.fail("selected again"))
    assert compare(store, annotations, tal, out, seeds=1, sola_config=sola_config, probe=False,
                   progress=False, log=lambda s: None) == table


def test_compare_uses_the_identity_when_it_wins_and_no_select_turns_selection_off(tmp_path, monkeypatch, capsys):
    import sola.experiments.compare
    from sola.cli import main
    from tests.test_probe import DIM, make_toy

    calls = []
    monkeypatch.setattr(sola.experiments.compare, "run_experiment", fake_experiment(calls))
    make_toy(tmp_path, flip=0)  # separable snippets: the scrambled checkpoints are clearly worse
    run = scrambled_run(tmp_path, DIM)
    features = tmp_path / "features"
    before = snapshot(run)
    args = ["compare", str(features), "--annotations", str(tmp_path / "annotations.json"),
            "--config", "tal_synthetic_cpu", "--adapter", str(run), "--seeds", "1", "--no-probe", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "selected")]) == 0
    out = capsys.readouterr().out
    assert "sola features: identity wins: no checkpoint beats the original features" in out
    used = json.loads((tmp_path / "selected" / "compare.json").read_text())["sola_adapter"]
    assert used["best"] == "identity" and used["features"] == str(features)
    # the kept identity: the sola mode's head is the baseline's, not trained a second time on equal features
    assert len(calls) == 1 and calls[0].path == features and not (tmp_path / "selected" / "sola_features").exists()
    sola_result = json.loads((tmp_path / "selected" / "results" / "sola_seed0.json").read_text())
    assert sola_result["reused_from"] == "baseline"
    assert sola_result["average_mAP"] == json.loads(
        (tmp_path / "selected" / "results" / "baseline_seed0.json").read_text())["average_mAP"]
    assert "the sola mode's heads are the baseline's" in out
    selected = tmp_path / "selected" / "sola_select"  # the run is an input: selected into compare's own folder
    assert json.loads((selected / "select.json").read_text())["best"] == "identity"
    assert used["select_table"] == str(selected / "select.json")
    assert snapshot(run) == before and not (run / "best.safetensors").exists()

    # --no-select takes the run's best.safetensors as it is (here: as if `sola select` had chosen the identity).
    (run / "best.safetensors").write_bytes((selected / "best.safetensors").read_bytes())
    calls.clear()
    assert main([*args, "--out", str(tmp_path / "plain"), "--no-select"]) == 0
    capsys.readouterr()
    used = json.loads((tmp_path / "plain" / "compare.json").read_text())["sola_adapter"]
    assert not used["selected"] and used["best"] is None
    assert used["source"] == str(run / "best.safetensors")  # the run's best as it is, as before
    assert len(calls) == 1  # that best is the identity: gate 0, nothing to transform, the baseline's head reused

    # Without best.safetensors, --no-select takes the final adapter; one output directory never
    # mixes the sola results of two adapters.
    (run / "best.safetensors").unlink()
    calls.clear()
    assert main([*args, "--out", str(tmp_path / "final"), "--no-select"]) == 0
    assert calls[1].path == tmp_path / "final" / "sola_features"
    used = json.loads((tmp_path / "final" / "compare.json").read_text())["sola_adapter"]
    assert used["source"] == str(run / "adapter.safetensors")
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "final")]) == 2
    err = capsys.readouterr().err
    assert "made with another adapter" in err and "new --out" in err


def fake_runs(values, seeds):
    return [{"mAP": {"0.50": v}, "average_mAP": v, "seconds_per_epoch": 1.0, "seed": s, "scoring": "x"}
            for v, s in zip(values, seeds)]


def test_table_has_the_paired_difference_and_says_n1_for_one_seed():
    from sola.core.stats import paired_difference
    from sola.experiments.compare import summarise

    tal = load_tal_config("tal_synthetic_cpu")
    base, sola = [0.40, 0.50, 0.45], [0.42, 0.49, 0.50]
    table = summarise({"baseline": fake_runs(base, [0, 1, 2]), "sola": fake_runs(sola, [0, 1, 2])}, {}, tal, 1.0)
    difference = table["rows"]["sola"]["average_mAP_minus_baseline"]
    assert difference == paired_difference(sola, base)
    assert difference["mean"] == pytest.approx(np.mean(np.subtract(sola, base)))
    row = format_markdown(table).splitlines()[3]
    assert row.startswith("| sola |") and f"{100 * difference['mean']:+.2f} [" in row
    one = summarise({"baseline": fake_runs([0.4], [0]), "sola": fake_runs([0.5], [0])}, {}, tal, 1.0)
    markdown = format_markdown(one)
    assert "(n=1)" in markdown and "± 0.00" not in markdown and "+10.00 (n=1)" in markdown


def test_compare_ends_with_a_verdict_per_metric():
    from sola.experiments.compare import summarise, verdict_lines, verdicts

    tal = load_tal_config("tal_synthetic_cpu")
    base, better = [0.40, 0.50, 0.45], [0.43, 0.52, 0.49]
    runs = lambda values: [{**run, "mAP": {"0.30": v + 0.1, "0.50": v}} for run, v in  # noqa: E731
                           zip(fake_runs(values, [0, 1, 2]), values)]
    table = summarise({"baseline": runs(base), "sola": runs(better), "unified": runs([0.30, 0.51, 0.44])}, {}, tal, 1.0)
    found = verdicts(table)
    assert [(v["mode"], v["metric"]) for v in found] == [
        ("sola", "avg mAP"), ("sola", "mAP@0.30"), ("sola", "mAP@0.50"),
        ("unified", "avg mAP"), ("unified", "mAP@0.30"), ("unified", "mAP@0.50")]
    assert found[0]["text"].startswith("SoLa helps: +3.0 [") and found[0]["text"].endswith("(3 pairs)")
    assert found[3]["text"].startswith("no measurable difference: ")
    table["verdict"] = found
    lines = verdict_lines(table)
    assert lines[0] == f"avg mAP (sola vs baseline): {found[0]['text']}"
    markdown = format_markdown(table)
    assert "**Verdict**" in markdown and f"- {lines[0]}" in markdown
    one = summarise({"baseline": fake_runs([0.4], [0]), "sola": fake_runs([0.5], [0])}, {}, tal, 1.0)
    assert verdict_lines(one)[0].startswith("avg mAP (sola vs baseline): one seed cannot tell")


def test_compare_selects_by_head_and_reuses_a_selection_only_under_the_same_config(tmp_path, monkeypatch, capsys):
    import sola.experiments.compare
    import sola.tal.experiment
    from sola.cli import main
    from tests.test_probe import DIM, make_toy
    from tests.test_select_head import sharpness_head

    proxies = []
    monkeypatch.setattr(sola.experiments.compare, "run_experiment", fake_experiment([]))
    monkeypatch.setattr(sola.tal.experiment, "run_experiment", sharpness_head(proxies))
    make_toy(tmp_path, flip=0)
    run = scrambled_run(tmp_path, DIM)  # scrambled checkpoints: sharper features, the stand-in head gains
    args = ["compare", str(tmp_path / "features"), "--annotations", str(tmp_path / "annotations.json"),
            "--config", "tal_synthetic_cpu", "--adapter", str(run), "--seeds", "2", "--no-probe", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "by_head"), "--select-by", "head", "--set", "select.seeds=2"]) == 0
    out = capsys.readouterr().out
    selection = json.loads((tmp_path / "by_head" / "sola_select" / "select.json").read_text())
    assert not (run / "select.json").exists() and not (run / "select_head").exists()  # the run is an input
    assert selection["criterion"] == "head" and selection["seeds"] == 2 and not selection["identity_wins"]
    used = json.loads((tmp_path / "by_head" / "compare.json").read_text())["sola_adapter"]
    assert used["criterion"] == "head" and used["best"] == selection["best"]
    assert "verdict: avg mAP (sola vs baseline): no measurable difference" in out  # the fake head: equal mAP
    # the terminal gives one verdict line per mode (average mAP); the lines per tIoU are in compare.md
    assert out.count("verdict: ") == 1 and "mAP@" not in out.split("verdict: ", 1)[1]
    assert "- mAP@0.50 (sola vs baseline)" in (tmp_path / "by_head" / "compare.md").read_text()
    assert proxies
    # The same selection config reuses select.json (of this --out, or one the run holds from `sola select`);
    # another one (the probe, or other proxy seeds) selects again.
    proxies.clear()
    assert main([*args, "--out", str(tmp_path / "by_head"), "--select-by", "head", "--set", "select.seeds=2"]) == 0
    assert "reusing the selection" in capsys.readouterr().out and not proxies
    for name in ("best.safetensors", "select.json"):  # as if `sola select --criterion head --seeds 2` had run
        (run / name).write_bytes((tmp_path / "by_head" / "sola_select" / name).read_bytes())
    assert main([*args, "--out", str(tmp_path / "again"), "--select-by", "head", "--set", "select.seeds=2"]) == 0
    assert f"reusing the selection in {run / 'select.json'}" in capsys.readouterr().out and not proxies
    assert main([*args, "--out", str(tmp_path / "three"), "--select-by", "head"]) == 0
    capsys.readouterr()
    assert proxies and json.loads((tmp_path / "three" / "sola_select" / "select.json").read_text())["seeds"] == 3
    assert main([*args, "--out", str(tmp_path / "probe")]) == 0
    assert "reusing the selection" not in capsys.readouterr().out
    assert json.loads((tmp_path / "probe" / "sola_select" / "select.json").read_text())["criterion"] == "probe"


def test_scratch_folders_of_killed_comparisons_are_removed(tmp_path):
    import subprocess
    import sys

    from sola.experiments.compare import remove_stale_scratch

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f".sola_seed0.pid{gone.pid}.x1y2.run"
    live = tmp_path / f".baseline_seed1.pid{os.getpid()}.a1b2.run"
    for folder in (dead, live):
        (folder / "checkpoints").mkdir(parents=True)
    assert remove_stale_scratch(tmp_path) == [dead]
    assert not dead.exists() and live.is_dir()


def test_fitted_mode_shows_the_adapter_that_selection_discarded(tmp_path, monkeypatch, capsys):
    import sola.experiments.compare
    from sola.cli import main
    from tests.test_probe import DIM, make_toy

    calls = []
    monkeypatch.setattr(sola.experiments.compare, "run_experiment", fake_experiment(calls))
    make_toy(tmp_path, flip=0)  # separable snippets: the scrambled checkpoints lose, the identity is kept
    run = scrambled_run(tmp_path, DIM)
    features, out = tmp_path / "features", tmp_path / "cmp"
    args = ["compare", str(features), "--annotations", str(tmp_path / "annotations.json"), "--config",
            "tal_synthetic_cpu", "--adapter", str(run), "--seeds", "2", "--no-probe", "--quiet",
            "--modes", "baseline,sola,fitted"]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    table = json.loads((out / "compare.json").read_text())
    assert table["sola_adapter"]["kept_original"] and table["modes"] == ["baseline", "sola", "fitted"]
    # heads: baseline and fitted trained per seed; sola (the kept originals) reused from the baseline
    assert [call.path for call in calls] == [features, features, out / "fitted_features", out / "fitted_features"]
    assert table["fitted_adapter"]["source"] == str(run / "adapter.safetensors")
    assert json.loads((out / "results" / "sola_seed1.json").read_text())["reused_from"] == "baseline"
    assert "reused_from" not in json.loads((out / "results" / "fitted_seed1.json").read_text())
    markdown = (out / "compare.md").read_text()
    assert markdown.startswith("**The original features were kept: identity wins")
    assert "the fitted row shows the adapter that selection discarded" in markdown
    assert "The original features were kept" in printed
    assert "avg mAP (fitted vs baseline)" in printed

    # --no-select on the run without best.safetensors: sola is the last adapter, so fitted is sola (heads reused)
    calls.clear()
    assert main([*args, "--out", str(tmp_path / "same"), "--no-select"]) == 0
    capsys.readouterr()
    assert [call.path for call in calls] == [features, features, tmp_path / "same" / "sola_features",
                                            tmp_path / "same" / "sola_features"]
    table = json.loads((tmp_path / "same" / "compare.json").read_text())
    assert table["fitted_adapter"]["reused_from"] == "sola" and not table["sola_adapter"]["kept_original"]
    assert json.loads((tmp_path / "same" / "results" / "fitted_seed0.json").read_text())["reused_from"] == "sola"
    assert "The original features were kept" not in (tmp_path / "same" / "compare.md").read_text()


def test_tsm_picture_and_probe_take_more_adapters(tmp_path, monkeypatch):
    import sola.evaluate.tsm as tsm
    from sola.adapt.adapter import SoLaAdapter
    from sola.data.stores import open_store
    from sola.evaluate.probe import compare_probe
    from tests.test_probe import make_toy

    make_toy(tmp_path, flip=0)
    store = open_store(tmp_path / "features")
    drawn = {}
    monkeypatch.setattr(tsm, "tsm_figure", lambda maps, out, *a, **k: drawn.update(maps) or out)
    import torch

    torch.manual_seed(0)
    other = SoLaAdapter(store.read(store.video_ids()[0]).shape[1], 8)
    with torch.no_grad():
        other.alpha.fill_(3.0)
        other.out.weight.mul_(200.0)  # far from the identity: another TSM, another probe row
    video = store.video_ids()[0]
    tsm.write_tsm_picture(store, video, tmp_path / "t.png", labels={"original features": "original (kept)"},
                          more={"SoLa as fitted (discarded)": other})
    assert list(drawn) == ["original (kept)", "SoLa as fitted (discarded)"]
    assert drawn["SoLa as fitted (discarded)"].shape == drawn["original (kept)"].shape

    from sola.data.annotations import load_annotations

    labels = load_annotations(tmp_path / "annotations.json")
    table = compare_probe(store, labels, seed=0, more={"fitted": other})
    assert list(table["rows"]) == ["baseline", "fitted"]
    assert table["rows"]["fitted"] != table["rows"]["baseline"]


@pytest.mark.usefixtures("one_thread")
def test_heads_trained_at_once_in_processes_equal_those_trained_in_turn(synthetic_small, tmp_path):
    store = open_store(synthetic_small / "features")
    annotations = load_annotations(synthetic_small / "annotations.json")
    tal = load_tal_config("tal_synthetic_cpu", {**TINY_TAL, "train.device": "cpu"})
    lines = []
    turn = compare(store, annotations, tal, tmp_path / "turn", modes=["baseline"], seeds=2, probe=False,
                   progress=False, log=lambda s: None)
    once = compare(store, annotations, tal, tmp_path / "once", modes=["baseline"], seeds=2, probe=False,
                   progress=False, log=lines.append, jobs=2)
    assert any("2 heads, 2 at once (one process each, 1 torch thread)" in line for line in lines)
    assert once["rows"]["baseline"]["average_mAP_per_seed"] == turn["rows"]["baseline"]["average_mAP_per_seed"]
    for seed in (0, 1):  # each process kept its result and its predictions, and left no scratch folder
        assert (tmp_path / "once" / "results" / f"baseline_seed{seed}.predictions.json").is_file()
    assert not list((tmp_path / "once" / "results").glob(".*.run"))
