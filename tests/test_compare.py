import json

import numpy as np
import pytest

from sola.annotations import load_annotations
from sola.compare import compare, format_markdown, parse_modes
from sola.config import load_config
from sola.errors import ConfigError
from sola.stores import open_store
from sola.tal.config import load_tal_config

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
    table = compare(store, annotations, tal, tmp_path / "cmp", modes=modes, seeds=2, sola_config=sola_config,
                    progress=False, log=lambda s: None)
    assert table["modes"] == modes
    baseline, adapted = table["rows"]["baseline"], table["rows"]["sola"]
    assert baseline["seeds"] == [0, 1] and list(baseline["mAP_mean"]) == ["0.30", "0.40", "0.50", "0.60", "0.70"]
    runs = [json.loads((tmp_path / "cmp" / "results" / f"baseline_seed{s}.json").read_text()) for s in (0, 1)]
    assert baseline["average_mAP_mean"] == pytest.approx(np.mean([r["average_mAP"] for r in runs]))
    assert baseline["average_mAP_std"] == pytest.approx(np.std([r["average_mAP"] for r in runs]))
    assert baseline["probe_accuracy"] is not None and adapted["probe_balanced_accuracy"] is not None
    assert table["rows"]["unified"]["probe_accuracy"] is None
    assert (tmp_path / "cmp" / "sola_run" / "adapter.safetensors").is_file()
    assert len(list((tmp_path / "cmp" / "sola_features").glob("*.npy"))) == 24
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert markdown == format_markdown(table) and "| unified+sm |" in markdown and "±" in markdown

    # Finished (mode, seed) results are reused: nothing is trained again.
    import sola.tal

    monkeypatch.setattr(sola.tal, "run_experiment", lambda *a, **k: pytest.fail("retrained a finished run"))
    again = compare(store, annotations, tal, tmp_path / "cmp", modes=modes, seeds=2, sola_config=sola_config,
                    progress=False, log=lambda s: None)
    assert again == table


def test_compare_cli_rejects_bad_modes(synthetic_small, capsys):
    from sola.cli import main

    code = main(["compare", str(synthetic_small / "features"), "--annotations",
                 str(synthetic_small / "annotations.json"), "--config", "tal_synthetic_cpu", "--modes", "nope"])
    assert code == 2 and "--modes" in capsys.readouterr().err
