"""Helpers of the hostile-input tests (`tests/test_hostile_*.py`): run `sola` in-process, check that a
failure is one line with a non-zero exit, and snapshot files to prove that inputs were not modified.

A new hostile case is one line in a parametrised table of a `test_hostile_*` module, or one small test
that calls `fails(...)` and compares `snapshot(...)` before and after.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from sola.adapt.adapter import SoLaAdapter, save_adapter
from sola.cli import main


def run(capsys, *args) -> tuple[int, str, str]:
    """`sola ARGS` in-process: (exit status, stdout, stderr); usage errors exit through SystemExit."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    """The only non-empty stderr line (no traceback, no progress bars)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def fails(capsys, *args, says: tuple[str, ...] = ()) -> str:
    """Run `sola ARGS`, check exit != 0 and one line containing every string of `says`; return the line."""
    code, _, err = run(capsys, *args)
    line = one_line(err)
    assert code not in (0, None), line
    for text in says:
        assert text in line, line
    return line


def snapshot(*roots: Path) -> dict[str, str]:
    """Path -> sha256 of every file under `roots` (missing roots map to nothing)."""
    found = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        for path in files:
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A 6-video synthetic benchmark (dim 16) and a non-identity adapter for it."""
    from sola.data.synthetic import SyntheticConfig, write_synthetic

    root = tmp_path_factory.mktemp("bench")
    write_synthetic(root / "data", SyntheticConfig(videos=6, dim=16, classes=2, min_length=40, max_length=80),
                    progress=False)
    torch.manual_seed(0)
    adapter = SoLaAdapter(16, hidden_dim=8)
    with torch.no_grad():
        adapter.alpha.fill_(0.5)
    save_adapter(adapter, root / "adapter.safetensors")
    return {"features": root / "data" / "features", "annotations": root / "data" / "annotations.json",
            "adapter": root / "adapter.safetensors", "root": root}
