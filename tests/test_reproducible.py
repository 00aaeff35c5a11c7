"""Same command, same seeds, same numbers (issue 29): the whole chain (fit, select by the probe and by the head,
transform, compare) run twice from scratch gives equal numbers, and so does a comparison killed and resumed.

Timings and paths aside, every number of every JSON/JSONL file and every byte of every array must match: on one
CPU with the same thread count the chain is bitwise reproducible.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tests.hostile import run

TIMING = ("second", "time", "written", "elapsed")  # keys whose values are clock readings
HEAD = ["--set", "train.epochs=2", "--set", "train.warmup_epochs=1", "--set", "model.embd_dim=16",
        "--set", "model.head_dim=16"]


def numbers(root: Path) -> dict[str, object]:
    """Every JSON/JSONL value (timings dropped, paths relative to `root`) and every array under `root`."""
    found = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.suffix == ".json":
            found[name] = _clean(json.loads(path.read_text()), root)
        elif path.suffix == ".jsonl":
            found[name] = [_clean(json.loads(line), root) for line in path.read_text().splitlines() if line]
        elif path.suffix in (".npy", ".safetensors"):
            found[name] = path.read_bytes()
    return found


def _clean(value, root: Path):
    if isinstance(value, dict):
        return {k: _clean(v, root) for k, v in value.items() if not any(word in k for word in TIMING)}
    if isinstance(value, list):
        return [_clean(v, root) for v in value]
    if isinstance(value, str):
        return value.replace(str(root.resolve()), "ROOT").replace(str(root), "ROOT")
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


def chain(capsys, root: Path, data: Path, interrupt=None, compare_only: bool = False) -> None:
    """fit -> select (probe, then head into a copy) -> transform -> compare, every step through the CLI
    (`compare_only`: the comparison alone, which fits and selects its own adapter)."""
    import shutil

    features, annotations = data / "features", data / "annotations.json"
    small = root / "small.yaml"
    small.write_text("adapter: {hidden_dim: 8}\nmatching: {projector_dim: 8}\n"
                     "fit: {epochs: 2, batch_size: 8, checkpoint_every: 1, device: cpu}\n")
    head = ["--config", "tal_synthetic_cpu", *HEAD]
    compare = ["compare", features, "--annotations", annotations, *head, "--sola-config", small, "--seeds", "2",
               "--out", root / "compare", "--quiet"]
    if interrupt is not None:
        with interrupt():
            code, _, _ = run(capsys, *compare)
        assert code == 130  # interrupted, as Ctrl-C
    code, _, err = run(capsys, *compare)
    assert code == 0, err
    if compare_only:
        return
    steps = [
        ["train", features, "--out", root / "run", "--config", small, "--quiet"],
        ["select", root / "run", "--annotations", annotations, "--quiet", "--device", "cpu"],
        ["transform", features, "--adapter", root / "run" / "best.safetensors", "--out", root / "sola", "--quiet"],
    ]
    for args in steps:
        code, _, err = run(capsys, *args)
        assert code == 0, (args, err)
    shutil.copytree(root / "run", root / "run_head")
    code, _, err = run(capsys, "select", root / "run_head", "--annotations", annotations, "--criterion", "head",
                       "--head-config", "tal_synthetic_cpu", "--head-epochs", "2", "--seeds", "2", "--quiet",
                       "--device", "cpu")
    assert code == 0, err


@pytest.mark.slow
def test_the_chain_twice_and_resumed_gives_equal_numbers(capsys, tmp_path, monkeypatch):
    import contextlib

    import sola.experiments.compare as compare_module
    from sola.data.synthetic import SyntheticConfig, write_synthetic

    data = tmp_path / "data"
    write_synthetic(data, SyntheticConfig(videos=12, dim=16, classes=2, min_length=40, max_length=80), progress=False)
    first, second, resumed = tmp_path / "first", tmp_path / "second", tmp_path / "resumed"
    for root in (first, second, resumed):
        root.mkdir()
    chain(capsys, first, data)
    chain(capsys, second, data, compare_only=True)  # fit, select and transform run twice below, compare thrice

    @contextlib.contextmanager
    def killed_after_one_head():
        real = compare_module.run_experiment
        calls = []

        def once(*args, **kwargs):
            if calls:
                raise KeyboardInterrupt
            calls.append(1)
            return real(*args, **kwargs)

        monkeypatch.setattr(compare_module, "run_experiment", once)
        yield
        monkeypatch.setattr(compare_module, "run_experiment", real)

    chain(capsys, resumed, data, interrupt=killed_after_one_head)
    a, b, c = numbers(first), numbers(second), numbers(resumed)
    assert a.keys() == c.keys() and set(b) == {name for name in a if name.startswith("compare/")}
    assert any(name.startswith("compare/results/") for name in a) and "run_head/select.json" in a
    for name in a:
        assert name not in b or a[name] == b[name], f"{name} differs between two runs from scratch"
        assert a[name] == c[name], f"{name} differs between two runs from scratch (the second comparison killed "\
                                   "and resumed)"
    table = a["compare/compare.json"]
    assert np.isfinite(table["rows"]["baseline"]["average_mAP_mean"])
