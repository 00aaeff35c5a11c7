"""The controls of "is SoLa more than smoothing?": the smoothing, the untrained adapter, and their modes of
`sola transform`, `sola compare` and `sola ablate` (sola.adapt.controls, sola.experiments.controls)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sola.adapt.adapter import SoLaAdapter
from sola.adapt.controls import (SmoothConfig, TemporalSmoother, adapter_departure, residual_departure,
                                 store_departure, untrained_adapter)
from sola.adapt.transform import apply_adapter, transform_store
from sola.core.config import load_config
from sola.core.errors import ConfigError
from sola.data.annotations import load_annotations
from sola.data.stores import open_store
from sola.tal.config import load_tal_config
from tests.hostile import fails, run
from tests.test_compare import TINY_SOLA, TINY_TAL

SOLA = {**TINY_SOLA, "fit.health_windows": 2}  # the fit's health figures on 2 windows: fast

# ---------------------------------------------------------------- the smoothing, by hand


def hand_smooth(features: np.ndarray, weights: list[float], dilation: int) -> np.ndarray:
    """out[t] = sum_j w_j f[t + d (j - k//2)], f = 0 outside the video: loops, float64."""
    length, k = len(features), len(weights)
    out = np.zeros(features.shape)
    for t in range(length):
        for j, w in enumerate(weights):
            s = t + dilation * (j - k // 2)
            if 0 <= s < length:
                out[t] += w * features[s]
    return out


def gaussian(k: int) -> list[float]:
    sigma = (k - 1) / 4
    w = [math.exp(-((j - k // 2) ** 2) / (2 * sigma**2)) for j in range(k)]
    return [x / sum(w) for x in w]


FEATURES = np.array([[1.0, -2.0], [2.0, 0.5], [4.0, 1.0], [3.0, 3.0], [0.0, -1.0], [5.0, 2.0], [2.0, 2.0]],
                    dtype=np.float32)  # (T=7, C=2)


def test_box_smoothing_of_a_ramp_by_hand():
    ramp = np.arange(1, 6, dtype=np.float32)[:, None]  # 1..5
    smoother = TemporalSmoother(1, SmoothConfig(kernel_size=3))
    # ends: one tap falls on the zero padding, as in the adapter's conv: (0 + 1 + 2) / 3 and (4 + 5 + 0) / 3
    np.testing.assert_allclose(apply_adapter(smoother, ramp)[:, 0], [1, 2, 3, 4, 3], rtol=1e-6)


@pytest.mark.parametrize("kernel,size,dilation,weights", [
    ("box", 3, 1, [1 / 3] * 3),
    ("box", 3, 2, [1 / 3] * 3),
    ("box", 5, 1, [1 / 5] * 5),
    ("box", 5, 2, [1 / 5] * 5),  # radius 4 of a 7-snippet video: most outputs see padding
    ("gaussian", 3, 1, gaussian(3)),
    ("gaussian", 5, 1, gaussian(5)),
    ("gaussian", 5, 2, gaussian(5)),
])
def test_smoothing_equals_the_hand_computation(kernel, size, dilation, weights):
    smoother = TemporalSmoother(2, SmoothConfig(kernel=kernel, kernel_size=size, dilation=dilation))
    expected = hand_smooth(FEATURES, weights, dilation)
    np.testing.assert_allclose(smoother(torch.from_numpy(FEATURES)[None])[0].numpy(), expected, rtol=1e-6, atol=1e-6)
    for chunk in (1, 2, 8192):  # the transform's path, chunked with real context: the same values
        np.testing.assert_allclose(apply_adapter(smoother, FEATURES, chunk_size=chunk), expected, rtol=1e-6, atol=1e-6)
    assert smoother.radius == dilation * (size - 1) // 2


@pytest.mark.parametrize("size,dilation", [(3, 1), (5, 2)])
def test_the_smoother_pads_the_ends_as_the_adapter_does(size, dilation):
    # An adapter whose g is the smoothing (one channel, positive features: the ReLUs pass everything).
    adapter = SoLaAdapter(1, 1, size, dilation)
    smoother = TemporalSmoother(1, SmoothConfig(kernel_size=size, dilation=dilation))
    with torch.no_grad():
        adapter.temporal.weight.copy_(smoother.kernel.view(1, 1, size))
        for conv in (adapter.temporal, adapter.mix, adapter.out):
            conv.bias.zero_()
        adapter.mix.weight.fill_(1.0)
        adapter.out.weight.fill_(1.0)
    features = torch.rand(1, 9, 1) + 0.5
    torch.testing.assert_close(adapter.residual(features), smoother(features))


def test_gaussian_weights_and_bad_settings():
    weights = SmoothConfig(kernel="gaussian").weights()
    assert weights.sum() == pytest.approx(1) and weights.argmax() == 2 and len(weights) == 5  # the adapter's k
    assert SmoothConfig().kernel_size == 5 and SmoothConfig().dilation == 1  # defaults: the adapter's geometry
    assert SmoothConfig.like({"kernel_size": 9, "dilation": 2, "hidden_dim": 3}) == SmoothConfig(kernel_size=9, dilation=2)
    for bad, says in (({"kernel_size": 4}, "odd"), ({"kernel_size": 0}, "positive"), ({"dilation": 0}, "dilation"),
                      ({"kernel": "median"}, "box or gaussian"), ({"kernel": "gaussian", "sigma": -1.0}, "sigma")):
        with pytest.raises(ConfigError, match=says):
            SmoothConfig(**bad).validate()


# ---------------------------------------------------------------- the untrained adapter


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    """6 synthetic videos of dim 16: features/ and annotations.json."""
    from sola.data.synthetic import SyntheticConfig, write_synthetic

    out = tmp_path_factory.mktemp("controls")
    write_synthetic(out, SyntheticConfig(videos=6, dim=16, classes=2, min_length=40, max_length=60), progress=False)
    return out


@pytest.fixture(scope="module")
def small(small_dir):
    return open_store(small_dir / "features")


def departure_by_hand(adapter: SoLaAdapter, store) -> float:
    """mean over every snippet of ||tanh(alpha) g(f)|| / ||f||, in float64 on whole videos."""
    model = SoLaAdapter(**adapter.shape).double()
    model.load_state_dict({k: v.double() for k, v in adapter.state_dict().items()})
    ratios = []
    with torch.no_grad():
        for video_id in store.video_ids():
            f = torch.from_numpy(store.read(video_id)).double()[None]
            ratios.append((torch.tanh(model.alpha) * model.residual(f)).norm(dim=-1)[0] / f.norm(dim=-1)[0])
    return float(torch.cat(ratios).mean())


@pytest.mark.parametrize("share", [0.05, 0.8, 30.0])  # target / g's departure; 30: no gate reaches it, g is scaled
def test_the_untrained_adapter_departs_as_much_as_the_target(small, share):
    shape = {"hidden_dim": 8, "kernel_size": 5, "dilation": 1}
    torch.manual_seed(3)
    at_one = residual_departure(SoLaAdapter(16, **shape), small)
    target = share * at_one
    state = torch.random.get_rng_state()
    adapter, record = untrained_adapter(small, target, shape, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert departure_by_hand(adapter, small) == pytest.approx(target, rel=1e-6)
    assert adapter_departure(adapter, small) == pytest.approx(target, rel=1e-6)
    assert record["departure"] == target and abs(record["gate"]) < 1 and record["videos"] == 6
    if share < 1:  # the closed form: tanh(alpha) = target / departure at gate 1
        assert record["out_scale"] == 1.0 and adapter.gate == pytest.approx(share, rel=1e-6)
    else:
        assert record["out_scale"] == pytest.approx(2 * share, rel=1e-6) and adapter.gate == pytest.approx(0.5)
    torch.manual_seed(3)  # g is the fit's initialisation for fit.seed 3
    assert torch.equal(adapter.temporal.weight, SoLaAdapter(16, 8, 5, 1).temporal.weight)


def test_a_zero_departure_is_the_identity_and_a_transform_departs_as_its_adapter(small, tmp_path):
    adapter, record = untrained_adapter(small, 0.0, {"hidden_dim": 8, "kernel_size": 5, "dilation": 1})
    assert adapter.gate == 0.0 and record["gate"] == 0.0
    adapter, _ = untrained_adapter(small, 0.2, {"hidden_dim": 8, "kernel_size": 5, "dilation": 1})
    transform_store(adapter, small, tmp_path / "out", progress=False)
    assert store_departure(small, open_store(tmp_path / "out")) == pytest.approx(0.2, rel=1e-5)
    assert residual_departure(adapter, small) * adapter.gate == pytest.approx(0.2, rel=1e-6)
    with pytest.raises(ConfigError, match="departure"):
        untrained_adapter(small, float("nan"))


# ---------------------------------------------------------------- sola transform --smooth


@pytest.fixture()
def half_store(tmp_path):
    """A float16 npy store of three videos."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "half"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"v{i}.npy", rng.normal(size=(10 + i, 4)).astype(np.float16))
    return folder


def test_transform_smooth_keeps_layout_and_dtype(half_store, tmp_path, capsys):
    out = tmp_path / "smooth"
    code, stdout, _ = run(capsys, "transform", half_store, "--smooth", 5, "--out", out, "--quiet")
    assert code == 0 and "transformed 3 videos" in stdout
    assert sorted(p.name for p in out.glob("*.npy")) == ["v0.npy", "v1.npy", "v2.npy"]
    record = json.loads((out / "sola_transform.json").read_text())
    assert record["made_by"] == {"module": "TemporalSmoother", "control": "smooth", "dim": 4, "kernel": "box",
                                 "kernel_size": 5, "dilation": 1}
    for i in range(3):
        original, smoothed = np.load(half_store / f"v{i}.npy"), np.load(out / f"v{i}.npy")
        assert smoothed.dtype == np.float16 and smoothed.shape == original.shape
        np.testing.assert_allclose(smoothed, hand_smooth(original.astype(np.float64), [0.2] * 5, 1), atol=2e-3)
    # resumable; another smoothing into the same --out is refused, never mixed
    assert run(capsys, "transform", half_store, "--smooth", 5, "--out", out, "--quiet")[1].count("3 already done")
    fails(capsys, "transform", half_store, "--smooth", 5, "--smooth-kernel", "gaussian", "--out", out,
          says=("another adapter (or smoothing)", "new --out"))
    code, stdout, _ = run(capsys, "transform", half_store, "--smooth", 3, "--dilation", 2, "--smooth-kernel",
                          "gaussian", "--out", tmp_path / "g", "--quiet")
    assert code == 0 and json.loads((tmp_path / "g" / "sola_transform.json").read_text())["made_by"]["dilation"] == 2


def test_smooth_store_is_the_command_in_python(half_store, tmp_path, capsys):
    from sola.adapt.controls import smooth_store

    run(capsys, "transform", half_store, "--smooth", 3, "--smooth-kernel", "gaussian", "--out", tmp_path / "cli", "--quiet")
    summary = smooth_store(open_store(half_store), tmp_path / "py", SmoothConfig(kernel="gaussian", kernel_size=3),
                           progress=False)
    assert summary["written"] == 3
    for i in range(3):
        assert (tmp_path / "py" / f"v{i}.npy").read_bytes() == (tmp_path / "cli" / f"v{i}.npy").read_bytes()
    assert (tmp_path / "py" / "sola_transform.json").read_text() == (tmp_path / "cli" / "sola_transform.json").read_text()


@pytest.mark.parametrize("args,says", [
    (["--smooth", 5, "--adapter", "x.safetensors"], ("--adapter", "--smooth", "not both")),
    ([], ("--adapter", "--smooth K")),
    (["--smooth", 4], ("--smooth", "odd", "5")),
    (["--adapter", "x.safetensors", "--dilation", 2], ("--dilation", "--smooth")),
])
def test_transform_refuses_bad_smoothing_flags(half_store, tmp_path, capsys, args, says):
    fails(capsys, "transform", half_store, *args, "--out", tmp_path / "out", says=says)
    assert not (tmp_path / "out").exists()


def test_transform_help_documents_smooth(capsys):
    code, out, _ = run(capsys, "transform", "--help")
    assert code == 0 and "--smooth K" in out and "--smooth-kernel" in out and "smoothing control" in out


# ---------------------------------------------------------------- sola compare with the controls

MODES = ["baseline", "sola", "smooth", "untrained"]
SCORES = {"features": (0.40, 0.44), "sola_features": (0.45, 0.50), "smooth_features": (0.46, 0.52),
          "untrained_features": (0.30, 0.33)}  # avg mAP per seed, by the folder the head was trained on


def scored_experiment(calls):
    def run_experiment(features, annotations, config, seed=0, **kwargs):
        calls.append(Path(features.path).name)
        value = SCORES[Path(features.path).name][seed]
        return {"mAP": {"0.50": value}, "average_mAP": value, "seconds_per_epoch": 0.1, "seed": seed,
                "scoring": "x", "mode": "baseline"}

    return run_experiment


def test_compare_writes_a_row_and_verdicts_vs_baseline_and_sola_per_control(small_dir, tmp_path, monkeypatch):
    import sola.experiments.compare
    from sola.core.stats import paired_difference
    from sola.experiments.compare import compare, format_markdown, verdict_lines

    calls = []
    monkeypatch.setattr(sola.experiments.compare, "run_experiment", scored_experiment(calls))
    store = open_store(small_dir / "features")
    annotations = load_annotations(small_dir / "annotations.json")
    tal = load_tal_config("tal_synthetic_cpu", TINY_TAL)
    out = tmp_path / "cmp"
    table = compare(store, annotations, tal, out, modes=MODES, seeds=2, sola_config=load_config(None, SOLA),
                    probe=False, progress=False, log=lambda s: None, select=False)
    assert table["modes"] == MODES and set(table["rows"]) == set(MODES)
    assert calls == [name for name in SCORES for _ in range(2)]  # each mode on its own features
    smooth, untrained = table["rows"]["smooth"], table["rows"]["untrained"]
    assert smooth["average_mAP_minus_sola"] == paired_difference([0.46, 0.52], [0.45, 0.50])
    assert untrained["average_mAP_minus_baseline"] == paired_difference([0.30, 0.33], [0.40, 0.44])
    assert "average_mAP_minus_sola" not in table["rows"]["sola"]
    lines = verdict_lines(table)
    for mode in ("smooth", "untrained"):
        assert any(line.startswith(f"avg mAP ({mode} vs baseline): ") for line in lines)
    assert any(line.startswith("avg mAP (untrained vs sola): untrained trails SoLa: ") for line in lines)
    assert any(line.startswith("avg mAP (smooth vs sola): ") for line in lines)
    assert not any("(sola vs sola)" in line or "(baseline vs" in line for line in lines)
    markdown = (out / "compare.md").read_text()
    assert markdown == format_markdown(table) and "avg mAP - sola [95% CI]" in markdown
    assert "Control smooth: " in markdown and "Control untrained: " in markdown
    # the controls' features, and what made them
    controls = json.loads((out / "controls.json").read_text())
    assert controls["smooth"]["kernel_size"] == 5 and controls["smooth"]["features"] == str(out / "smooth_features")
    departure = store_departure(store, open_store(out / "sola_features"))
    assert departure > 0 and controls["untrained"]["departure"] == pytest.approx(departure)
    assert store_departure(store, open_store(out / "untrained_features")) == pytest.approx(departure, rel=1e-4)
    assert table["controls"] == json.loads((out / "compare.json").read_text())["controls"]
    # resumed as it is; another smoothing into the same OUT is refused before any work
    monkeypatch.setattr(sola.experiments.compare, "run_experiment", lambda *a, **k: pytest.fail("retrained"))
    assert compare(store, annotations, tal, out, modes=MODES, seeds=2, sola_config=load_config(None, SOLA),
                   probe=False, progress=False, log=lambda s: None, select=False) == table
    with pytest.raises(ConfigError, match="smooth features/results were made another way"):
        compare(store, annotations, tal, out, modes=MODES, seeds=2, sola_config=load_config(None, SOLA),
                probe=False, progress=False, log=lambda s: None, select=False, smooth={"kernel": "gaussian"})


def test_bad_smoothing_settings_are_refused_before_any_work(small_dir, tmp_path, capsys):
    common = [small_dir / "features", "--annotations", small_dir / "annotations.json", "--config", "tal_synthetic_cpu",
              "--smooth-size", 4]
    fails(capsys, "compare", *common, "--modes", "baseline,smooth", "--out", tmp_path / "cmp",
          says=("--smooth-size", "odd", "use 5"))
    fails(capsys, "ablate", *common, "--grid", "mode=sola,smooth", "--out", tmp_path / "abl",
          says=("--smooth-size", "odd"))
    assert not (tmp_path / "cmp").exists() and not (tmp_path / "abl").exists()


def test_verdict_vs_sola_is_withheld_where_both_heads_learned_nothing():
    from sola.experiments.compare_table import summarise, verdicts

    def runs(values):
        return [{"mAP": {"0.50": v}, "average_mAP": v, "seconds_per_epoch": 1.0, "seed": s, "scoring": "x"}
                for s, v in enumerate(values)]

    tal = load_tal_config("tal_synthetic_cpu")
    table = summarise({"baseline": runs([0.3, 0.31]), "sola": runs([0.001, 0.002]), "smooth": runs([0.0, 0.003])},
                      {}, tal, 1.0)
    against_sola = [v for v in verdicts(table) if v["against"] == "sola"]
    assert len(against_sola) == 1 and against_sola[0]["no_verdict"] and "learned nothing" in against_sola[0]["text"]
    assert not any(v.get("no_verdict") for v in verdicts(table) if v["against"] == "baseline")
    # without sola among the modes, a control is judged against the baseline only
    alone = summarise({"baseline": runs([0.3, 0.31]), "smooth": runs([0.2, 0.25])}, {}, tal, 1.0)
    assert {v["against"] for v in verdicts(alone)} == {"baseline"}


@pytest.mark.slow
def test_compare_cli_end_to_end_with_the_controls(synthetic_small, tmp_path, capsys):
    """The real path: fit SoLa, write the controls' features, train a 1-epoch head per mode, probe each."""
    out = tmp_path / "cmp"
    code, stdout, err = run(capsys, "compare", synthetic_small / "features", "--annotations",
                            synthetic_small / "annotations.json", "--config", "tal_synthetic_cpu",
                            *[a for key, value in {**TINY_TAL, **SOLA}.items() for a in ("--set", f"{key}={value}")],
                            "--modes", ",".join(MODES), "--seeds", 1, "--no-select", "--quiet", "--out", out)
    assert code == 0, err
    table = json.loads((out / "compare.json").read_text())
    assert table["modes"] == MODES
    for mode in MODES:
        assert (out / "results" / f"{mode}_seed0.json").is_file()
        assert table["rows"][mode]["probe_balanced_accuracy"] is not None
        assert f"| {mode} |" in stdout
    for mode in ("smooth", "untrained"):
        assert f"verdict: avg mAP ({mode} vs baseline): " in stdout
        assert f"verdict: avg mAP ({mode} vs sola): " in stdout
    assert len(list((out / "smooth_features").glob("*.npy"))) == 24


# ---------------------------------------------------------------- sola ablate with the controls


def test_ablate_accepts_the_controls_and_sets_them_against_sola(small_dir, tmp_path, monkeypatch, capsys):
    import sola.experiments.ablate
    import sola.tal.experiment
    from sola.experiments.ablate import split_point

    assert split_point({"mode": "smooth"})[0] == "smooth"
    with pytest.raises(ConfigError, match="smooth, untrained"):
        split_point({"mode": "blur"})
    monkeypatch.setattr(sola.tal.experiment, "run_experiment", scored_experiment([]))
    monkeypatch.setattr(sola.experiments.ablate, "probe_row", lambda store, annotations: {})  # the head's columns only
    out = tmp_path / "abl"
    code, stdout, err = run(capsys, "ablate", small_dir / "features", "--annotations", small_dir / "annotations.json",
                            "--config", "tal_synthetic_cpu",
                            *[a for key, value in SOLA.items() for a in ("--set", f"{key}={value}")],
                            "--grid", "mode=sola,smooth,untrained", "--seeds", 2, "--no-select", "--out", out)
    assert code == 0, err
    table = json.loads((out / "ablate.json").read_text())
    rows = {row["name"]: row for row in table["rows"]}
    assert set(rows) == {"mode=sola", "mode=smooth", "mode=untrained"}
    assert rows["mode=smooth"]["columns"]["average_mAP"]["adapted"]["mean"] == pytest.approx(0.49)
    assert rows["mode=smooth"]["versus_sola"]["point"] == "mode=sola"
    assert "trails SoLa" in rows["mode=untrained"]["versus_sola"]["verdict"]
    assert "versus_sola" not in rows["mode=sola"]
    assert "- mode=smooth vs mode=sola: head avg mAP +1.5" in stdout and "Controls against SoLa" in stdout
