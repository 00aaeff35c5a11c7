"""Shared fixtures: small synthetic stores and the path of the shared real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data; skips the test with a reason when the shared data is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data {path} is absent (expected beside the repository)")
    return path


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch):
    # Two cores: keep torch from oversubscribing when tests run beside other work. SOLA_THREADS keeps the commands
    # run in the test (and their subprocesses) at this count instead of measuring the machine's load each time.
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(min(previous, 2))
    monkeypatch.setenv("SOLA_THREADS", str(torch.get_num_threads()))
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread for the test: resumed and whole runs are bitwise equal, small matrices are as fast, and a
    busy machine does not thrash (modules that want it everywhere: `pytestmark = pytest.mark.usefixtures(...)`)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("SOLA_THREADS", "1")
    yield
    torch.set_num_threads(before)


def write_npy_store(root: Path, lengths: list[int], dim: int = 16, dtype=np.float32, seed: int = 0) -> Path:
    """A tiny npy store with smooth random features, one file per video."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for index, length in enumerate(lengths):
        base = rng.standard_normal((length, dim))
        smooth = np.cumsum(base, axis=0) / np.sqrt(np.arange(1, length + 1))[:, None]
        np.save(root / f"vid{index:03d}.npy", smooth.astype(dtype))
    return root


@pytest.fixture(scope="session")
def synthetic_small(tmp_path_factory) -> Path:
    """A 24-video synthetic benchmark (dim 32) shared by the tests that need real structure."""
    from sola.data.synthetic import SyntheticConfig, write_synthetic

    out = tmp_path_factory.mktemp("synthetic")
    write_synthetic(out, SyntheticConfig(videos=24, dim=32, classes=4, min_length=40, max_length=120), progress=False)
    return out
