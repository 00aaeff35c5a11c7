"""Hostile config values, seeds, sizes and config files: every command refuses them in one line, before any work.

One guard per promise: each config value is checked against the range declared beside its field
(`sola.core.config.ranged`, checked by `SectionedConfig.validate`), every seed lies in [0, 2**32 - 1], every
size that allocates is compared with this machine's memory first (`sola.core.memory.require_memory`), and every
`--config` file goes through `read_yaml_sections`. A new case is one line in a table below.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from sola.core.config import MAX_CONFIG_BYTES, SectionedConfig, SoLaConfig, ranged, read_yaml_sections
from sola.core.errors import ConfigError
from sola.core.memory import format_bytes, require_memory, total_memory_bytes
from tests.hostile import bench, fails, one_line, run, snapshot  # noqa: F401

# The command line of each command that takes --config/--set (or, for cost, size flags), up to its options.
COMMANDS = {
    "train": "train {features} --out {out} --quiet",
    "tal": "tal train {features} --annotations {annotations} --out {out} --quiet",
    "probe": "probe {features} --annotations {annotations} --quiet",
    "select": "select {out} --features {features} --annotations {annotations} --quiet",
    "compare": "compare {features} --annotations {annotations} --out {out} --quiet",
    "ablate": "ablate {features} --annotations {annotations} --grid adapter.kernel_size=1,3 --out {out} --quiet",
    "synth": "synth {out}",
    "splice": "splice {features} {out} --quiet",
    "extract": "extract {tmp}/videos --out {out} --quiet",
    "classify": "classify {tmp}/clip.mp4",
    "demo": "demo --out {out} --quiet",
    "transform": "transform {features} --adapter {adapter} --out {out} --quiet",
    "cost": "cost --repeats 1 --device cpu",
    "eval-proposals": "eval-proposals {annotations} {annotations}",
}

# (command, its options, words the one error line must hold)
CASES = [
    # ranges: a value far outside what the key can mean
    ("probe", "--set data.feat_stride=1.0e+30", ("--set: data.feat_stride", "4096", "1e+30")),
    ("probe", "--set data.fps=.inf", ("data.fps", "finite")),
    ("probe", "--set sgd.batch_size=2.5", ("sgd.batch_size", "integer", "2.5")),
    ("probe", "--set sgd.momentum=1.5", ("sgd.momentum", "< 1")),
    ("train", "--set fit.lr=1e30", ("fit.lr", "1000", "1e+30")),
    ("train", "--set fit.epochs=.inf", ("fit.epochs", "integer")),
    ("train", "--set fit.max_departure=.nan", ("fit.max_departure", "nan")),
    ("train", "--set matching.num_positions=1e12", ("matching.num_positions", "1e+12")),
    ("train", "--set fit.steps=-3", ("fit.steps", "non-negative")),
    ("tal", "--set model.branch_layers=1000000000", ("model.branch_layers", "24")),
    ("tal", "--set data.feat_stride=1e30", ("data.feat_stride", "4096")),
    ("tal", "--set test.tiou_thresholds=[0.5,2]", ("test.tiou_thresholds", "strictly between 0 and 1", "got 2")),
    ("tal", "--set train.num_workers=1e9", ("train.num_workers", "1024")),
    ("select", "--set data.holdout=1e30", ("data.holdout", "strictly between 0 and 1")),
    ("select", "--seeds 100000", ("--seeds", "1000")),
    ("compare", "--seeds 1e9", ("--seeds", "1000")),
    ("compare", "--set model.n_head=1e9", ("model.n_head", "4096")),
    ("ablate", "--seeds 1e9", ("--seeds", "1000")),
    ("synth", "--set synth.blur=1e30", ("synth.blur", "10000")),
    ("synth", "--set synth.validation_fraction=2", ("synth.validation_fraction", "strictly between 0 and 1")),
    ("splice", "--action-fraction nan", ("--action-fraction", "finite")),
    ("splice", "--set splice.max_clips=1e12", ("splice.max_clips", "10000000")),
    ("extract", "--set extract.stride=1e30", ("extract.stride", "10000000")),
    ("extract", "--batch 1e12", ("--batch", "2147483647")),
    ("classify", "--set classify.topk=1000", ("classify.topk", "400")),
    ("demo", "--set fit.lr=1e30", ("fit.lr", "1000")),
    ("demo", "--epochs 1e12", ("--epochs", "2147483647")),
    ("transform", "--chunk-size 1e12", ("--chunk-size", "2147483647")),
    ("cost", "--dim 8 --dilation 3", ("zero padding", "--dilation=3", "--kernel=5")),  # as train refuses it
    ("cost", "--dim 8 --repeats 1e6", ("--repeats", "1000")),
    ("eval-proposals", "--max-proposals 1e300", ("--max-proposals", "1e+06")),
    # seeds: integers in [0, 2**32 - 1], refused before any folder exists
    ("train", "--seed 18446744073709551616", ("--seed", "4294967295")),
    ("train", "--set fit.seed=1.0e+30", ("--set: fit.seed", "4294967295", "1e+30")),
    ("train", "--set fit.seed=-1", ("--set: fit.seed", "4294967295", "-1")),
    ("tal", "--set train.seed=1.0e+30", ("train.seed", "4294967295")),
    ("tal", "--seed -1", ("--seed", "4294967295")),
    ("probe", "--seed 4294967296", ("--seed", "4294967295")),
    ("probe", "--set data.seed=-1", ("data.seed", "4294967295")),
    ("compare", "--set train.seed=1.0e+30", ("train.seed", "4294967295")),
    ("compare", "--set fit.seed=-1", ("fit.seed", "4294967295")),
    ("ablate", "--set fit.seed=1.0e+30", ("fit.seed", "4294967295")),
    ("synth", "--set synth.seed=1.0e+30", ("synth.seed", "4294967295")),
    ("synth", "--seed 1e20", ("--seed", "4294967295")),
    ("splice", "--set splice.seed=-1", ("splice.seed", "4294967295")),
    ("demo", "--set fit.seed=-1", ("fit.seed", "4294967295")),
    # sizes: the bytes are estimated first and refused with both figures
    ("train", "--set adapter.hidden_dim=1e12", ("adapter.hidden_dim=1e+12", "needs", "TB", "this machine has")),
    ("train", "--set fit.batch_size=1e14", ("fit.batch_size=1e+14", "needs", "this machine has")),
    ("train", "--set transform.chunk_size=1e14", ("transform.chunk_size=1e+14", "needs")),
    ("tal", "--set model.embd_dim=1e12", ("model.embd_dim=1e+12", "needs", "this machine has")),
    ("tal", "--set data.max_seq_len=1e14", ("data.max_seq_len=1e+14", "needs")),
    ("compare", "--set matching.projector_dim=1e12", ("matching.projector_dim=1e+12", "needs")),
    ("ablate", "--set adapter.hidden_dim=1e12", ("adapter.hidden_dim=1e+12", "needs")),
    ("synth", "--set synth.dim=1e12", ("synth.dim=1e+12", "needs", "this machine has")),
    ("synth", "--set synth.videos=1.0e+12", ("synth.videos=1e+12", "needs")),
    ("synth", "--set synth.videos=1e9", ("synth.videos=1000000000",)),  # its features: beyond the free disk
    ("splice", "--set splice.videos=1.0e+13", ("splice.videos=1e+13", "needs")),
    ("extract", "--set extract.batch_size=1e9", ("extract.batch_size=1000000000", "needs")),
    ("classify", "--set classify.window=1e12", ("classify.window=1e+12", "needs")),
    ("demo", "--set adapter.hidden_dim=1e12", ("adapter.hidden_dim=1e+12", "needs")),
    ("transform", "--set transform.chunk_size=1e14", ("transform.chunk_size=1e+14", "needs")),
    ("cost", "--dim 1e9", ("--dim 1000000000", "needs", "this machine has")),
    ("cost", "--dim 8 --hidden 1e9", ("--hidden 1000000000", "needs")),
    ("cost", "--dim 8 --batch-size 1e9", ("--batch-size 1000000000", "needs")),
    ("cost", "--dim 8 --hidden 4 --batch-size 2 --frames 1000 --size 100000", ("--size 100000", "needs")),
    # --set values that are not YAML
    ("train", "--set fit.lr=[1", ("--set 'fit.lr=[1'", "not valid YAML", "line 1")),
    ("train", "--set fit.lr=" + "[" * 5000, ("--set 'fit.lr=[[[", "nests too deeply")),
    ("ablate", "--grid fit.lr=[1", ("--grid value '[1'", "not valid YAML")),
    # torch threads and parallel heads: counts, not anything else
    ("train", "--threads 0", ("--threads", "0")),
    ("train", "--threads 1e9", ("--threads", "1024")),
    ("train", "--threads nan", ("--threads", "nan")),
    ("compare", "--jobs 0", ("--jobs", "0")),
    ("compare", "--jobs 1e9", ("--jobs", "256")),
]


def command_line(command: str, options: str, values: dict) -> list[str]:
    return (COMMANDS[command] + " " + options).format(**values).split()


@pytest.fixture
def values(bench, tmp_path):
    return {**{k: str(v) for k, v in bench.items()}, "out": str(tmp_path / "out"), "tmp": str(tmp_path)}


@pytest.mark.parametrize("command, options, says", CASES, ids=[f"{c} {o}" for c, o, _ in CASES])
def test_hostile_values_are_refused_in_one_line_before_any_work(capsys, bench, values, tmp_path, command, options,
                                                                 says):
    args = command_line(command, options, values)
    before = snapshot(bench["root"])
    fails(capsys, *args, says=says)
    assert not (tmp_path / "out").exists()  # no run folder, no store: refused first
    assert snapshot(bench["root"]) == before


def written(text: str | bytes):
    """A maker of a --config file holding `text`."""
    def make(path):
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path
    return make


# --config files that are not configs: (how to make the file from a free path, words)
CONFIG_FILES = {
    "binary npy": (lambda p: np.save(p, np.zeros(4)) or p.with_suffix(".npy"), ("not a YAML file", "binary")),
    "program": (written(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256))), ("not a YAML file",)),
    "directory": (lambda p: p.mkdir() or p, ("is a directory",)),
    "/dev/null": (lambda p: "/dev/null", ("not a regular file",)),
    "empty": (written(""), ("empty (0 bytes)",)),
    "list": (written("- 1\n- 2\n"), ("mapping of sections", "not a list")),
    "scalar": (written("42\n"), ("mapping of sections", "not a number")),
    "huge": (written("# x\n" * (MAX_CONFIG_BYTES // 4 + 1)), ("1,048,580 bytes", "1,048,576")),
    "python tag": (written("fit: !!python/object/apply:os.system ['true']\n"), ("not valid YAML", "python/object")),
    "bad YAML": (written("fit:\n  lr: [1, 2\n"), ("not valid YAML", "line 3, column 1")),
    "deep": (written("fit: " + "[" * 100_000 + "]" * 100_000), ("nests lists or mappings too deeply",)),
    "missing": (lambda p: p, ("does not exist",)),
}


@pytest.mark.parametrize("kind", list(CONFIG_FILES))
def test_a_config_that_is_not_a_yaml_mapping_is_one_line(capsys, values, tmp_path, kind):
    make, says = CONFIG_FILES[kind]
    path = make(tmp_path / "config")
    line = fails(capsys, *command_line("train", f"--config {path}", values), says=(str(path), *says))
    assert line.startswith("sola train: error: config file")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", [c for c in COMMANDS if c not in ("cost", "eval-proposals")])
def test_every_config_reading_command_refuses_a_binary_config(capsys, values, tmp_path, command):
    path = tmp_path / "weights.npy"
    np.save(path, np.arange(10.0))
    fails(capsys, *command_line(command, f"--config {path}", values), says=(str(path), "not a YAML file"))
    assert not (tmp_path / "out").exists()


def test_compare_and_select_check_their_second_config_too(capsys, values, tmp_path):
    path = tmp_path / "sola.npy"
    np.save(path, np.arange(10.0))
    fails(capsys, *command_line("compare", f"--sola-config {path}", values), says=(str(path), "not a YAML file"))
    fails(capsys, *command_line("select", f"--criterion head --head-config {path}", values),
          says=(str(path), "not a YAML file"))


def test_a_yaml_error_is_one_line_with_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("fit:\n  lr: 1\n   epochs: 3\n")
    with pytest.raises(ConfigError) as info:
        read_yaml_sections(path)
    assert "\n" not in str(info.value) and "line 3, column" in str(info.value)


def test_a_file_with_only_comments_is_the_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# nothing changed\n")
    assert SoLaConfig.load(path) == SoLaConfig()


@dataclasses.dataclass
class Unranged:
    width: int = 3


@dataclasses.dataclass
class Ranged:
    width: int = ranged(3, 1, 8)
    name: str = "x"  # text needs no range


class Fine(SectionedConfig):
    part: Ranged


def test_a_number_field_without_a_range_cannot_be_declared():
    with pytest.raises(TypeError, match="part.width is a number without a range"):
        class Forgot(SectionedConfig):
            part: Unranged

    assert Fine().validate().part.width == 3
    with pytest.raises(ConfigError, match=r"^--set: part.width must be a positive integer <= 8, got 9$"):
        Fine.load(None, {"part.width": 9})


def test_every_shipped_config_and_default_is_inside_its_ranges():
    from sola.data.splice import SpliceSections
    from sola.data.synthetic import SynthSections
    from sola.evaluate.probe.config import ProbeConfig
    from sola.extract.config import ExtractConfig
    from sola.tal.config import TalConfig, load_tal_config

    for config in (SoLaConfig, TalConfig, ProbeConfig, ExtractConfig, SynthSections, SpliceSections):
        config().validate()
    import sola

    shipped = sorted(path.stem for path in (Path(sola.__file__).parent / "configs").glob("*.yaml"))
    assert {"thumos14_i3d", "activitynet_tsp", "tal_synthetic_cpu", "tal_splice_cpu", "sola_extract_i3d"} <= set(shipped)
    for name in shipped:  # every shipped head config is valid
        load_tal_config(name)


def test_library_seeds_are_checked_too():
    from sola.tal.train import seed_everything

    for seed in (-1, 2**32, 1.5):
        with pytest.raises(ConfigError, match="seed"):
            seed_everything(seed)
    seed_everything(2**32 - 1)


def test_the_probe_matrix_is_refused_beyond_memory(monkeypatch):
    from sola.evaluate.probe import protocols

    class Snippets:
        num_snippets = 10**13

        class store:  # noqa: N801
            @staticmethod
            def dim():
                return 1024

    with pytest.raises(ConfigError, match="probe's matrix of 10000000000000 snippets x 1024 channels needs .* TB"):
        protocols.build_matrix(Snippets())


def test_memory_figures(monkeypatch):
    assert total_memory_bytes() > 0
    assert format_bytes(16e12) == "16 TB" and format_bytes(24.3e9) == "24.3 GB" and format_bytes(512) == "512 B"
    monkeypatch.setattr("sola.core.memory.total_memory_bytes", lambda: 24 * 10**9)
    require_memory(23e9, "fine")
    with pytest.raises(ConfigError, match="^adapter.hidden_dim 1e12 needs 16 TB; this machine has 24 GB of memory$"):
        require_memory(16e12, "adapter.hidden_dim 1e12")


def test_integer_flags_read_exponents_but_not_fractions(capsys, values):
    code, _, err = run(capsys, *command_line("probe", "--boundary-k 2.5", values))
    assert code == 2 and "--boundary-k: expected an integer, got '2.5'" in one_line(err)


@pytest.mark.parametrize("command", ["synth", "splice"])
def test_outputs_beyond_the_free_disk_are_refused_before_writing(capsys, tmp_path, monkeypatch, command):
    from collections import namedtuple

    clips = tmp_path / "clips"
    clips.mkdir()
    for name in ("a_1", "a_2", "a_3", "b_1", "b_2", "b_3"):
        np.save(clips / f"{name}.npy", np.ones((10, 4), np.float32))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("sola.core.memory.shutil.disk_usage", lambda path: usage(10**6, 10**6 - 1000, 1000))
    args = ["synth", tmp_path / "out", "--videos", "4"] if command == "synth" else \
        ["splice", clips, tmp_path / "out", "--actions", "1", "--videos", "4", "--quiet"]
    fails(capsys, *args, says=("writes about", "1 kB free", "another disk"))
    assert not (tmp_path / "out" / "features").exists()
