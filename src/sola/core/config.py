"""Dataclass configs with the reference defaults; YAML files override them, CLI flags override YAML.

Every default of the SoLa reference lives here once:
adapter (H=512, k=5, dilation 1), Similarity Matching (L=23, s=2, start=4, N=8, K=16,
projector 512) and fitting (AdamW lr 1e-4, weight decay 0.01, batch 256, 150 epochs,
a checkpoint every 10 epochs, one window per video per epoch, a constant lr).
Beyond the reference (options, off by default): a budget in optimiser steps (`fit.steps`), a
linear warm-up and cosine decay; the fit's guardrails (`fit.max_departure`, `fit.collapse_ratio`,
`fit.frozen_epochs`) only stop a fit that has diverged or collapsed.

Every number's range is declared beside its field (`ranged`) and checked for every config by
`SectionedConfig.validate`; sizes that allocate are compared with this machine's memory
(`require_config_memory`) before anything is built or written.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sola.core.atomic import atomic_write_text
from sola.core.errors import ConfigError
from sola.core.inputs import input_file, input_problem
from sola.core.memory import require_memory

MAX_CONFIG_BYTES = 1 << 20  # a config file is read only up to this size


@dataclass(frozen=True)
class Range:
    """The values a number may take: `low <= x <= high` (`above`: `low < x`; `below`: `x < high`).

    NaN is never inside; an infinity only when the bound on its side is itself infinite and not excluded.
    """

    low: float
    high: float
    above: bool = False
    below: bool = False
    note: str = ""  # why, when the bound is not obvious ("a 95% interval needs two paired seeds")

    def __contains__(self, value) -> bool:
        return bool((value > self.low if self.above else value >= self.low)
                    and (value < self.high if self.below else value <= self.high))

    def describe(self) -> str:
        """"between 1 and 4096", "> 0 and <= 1000", "> 0 (inf: no bound)"."""
        if not (self.above or self.below or math.isinf(self.high)):
            return f"between {show_number(self.low)} and {show_number(self.high)}"
        if self.above and self.below:
            return f"strictly between {show_number(self.low)} and {show_number(self.high)}"
        low = f"{'>' if self.above else '>='} {show_number(self.low)}"
        if math.isinf(self.high):
            return f"{low} (inf: no bound)"
        return f"{low} and {'<' if self.below else '<='} {show_number(self.high)}"


def show_number(value) -> str:
    """A number as a message shows it: whole numbers in full below 1e10 (seeds), else four significant digits."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        text = repr(value)
        return text if len(text) <= 80 else text[:77] + "..."
    if (isinstance(value, int) or (math.isfinite(value) and value.is_integer())) and abs(value) < 10**10:
        return str(int(value))
    return f"{value:.4g}"


def ranged(default=dataclasses.MISSING, low: float = -math.inf, high: float = math.inf, *, above: bool = False,
           below: bool = False, note: str = "", factory=dataclasses.MISSING):
    """A dataclass field with its allowed range beside it: `hidden_dim: int = ranged(512, 1, SIZE)`.

    `SectionedConfig.validate` checks every section's values against these ranges (an int field holds an int,
    a float is finite, lists item by item); a numeric field without one is refused when the config is defined.
    """
    meta = {"range": Range(low, high, above, below, note)}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


SIZE = 10**15  # the upper bound of a size (width, batch, count) that allocates: memory is its real bound, checked
COUNT = 10**7  # the upper bound of a loop count (epochs, steps of a window, top-k): no more is ever useful
SEED = (0, 2**32 - 1)  # every seed: what numpy, torch and Python's random all take


@typing.dataclass_transform(field_specifiers=(dataclasses.field,))
class SectionedConfig:
    """The one config pattern of every stage: a dataclass of dataclass sections.

    Defaults are the reference values; a YAML file of sections overrides them, and dotted overrides
    (`{"fit.lr": 1e-4}`, the CLI's `--set` and its named flags) override the file. A subclass lists
    its sections as annotations (each defaults to its dataclass's defaults) and names its checker:
    `class SoLaConfig(SectionedConfig, check=validate_config)`; it becomes a dataclass.

    Every number of a section declares its range beside it (`hidden_dim: int = ranged(512, 1, SIZE)`):
    `validate` checks all of them (an integer where one is expected, finite, inside) before the checker, and a
    section with a number that has no range is refused when the subclass is defined, so no key can forget it.
    """

    _check = None  # the subclass's checker: raises `ConfigError` for a bad value

    def __init_subclass__(cls, check=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if check is not None:
            cls._check = staticmethod(check)
        for name, section in typing.get_type_hints(cls).items():
            if name not in vars(cls):
                setattr(cls, name, field(default_factory=section))
            for key in dataclasses.fields(section):
                if _is_numeric(typing.get_type_hints(section)[key.name]) and "range" not in key.metadata:
                    raise TypeError(f"{cls.__name__}: {name}.{key.name} is a number without a range; declare it "
                                    f"with sola.core.config.ranged(default, low, high)")
        dataclass(cls)

    def validate(self):
        """Check every value: first each against the range declared beside its field (type, finite, bounds),
        then the subclass's checker (relations between keys, memory). Raises `ConfigError` naming the key.
        Returns the config."""
        check_ranges(self)
        if self._check is not None:
            self._check(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict of the config (what a run's `config.yaml` holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, base=None, where: str = "config"):
        """A config from a nested dict over `base` (default: the defaults), not yet validated.

        Raises `ConfigError` for unknown sections or keys and values of the wrong type.
        """
        return apply_sections(base if base is not None else cls(), data, where)

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None, base=None):
        """Read a YAML file (a path, or the name of a config shipped in `configs/`) over `base` (default:
        the defaults), apply dotted `overrides` (None values are left out) and validate; raises `ConfigError`."""
        data: dict[str, Any] = {}
        where = "config"
        if path is not None:
            path = packaged_config(path)
            where = str(path)
            problem = input_problem(path)
            if problem is not None:
                hint = "; pass a YAML file or one of configs/*.yaml" if problem == "does not exist" else ""
                raise ConfigError(f"config file {path} {problem}{hint}")
            data = read_yaml_sections(path)
        config = cls.from_dict(data, base=base, where=where)
        config = cls.from_dict(nest_dotted(overrides), base=config, where="--set")
        try:
            return config.validate()
        except ConfigError as exc:
            given = [key for key, value in (overrides or {}).items() if value is not None and str(exc).startswith(key)]
            raise ConfigError(f"{'--set' if given else where}: {exc}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as YAML, atomically."""
        atomic_write_text(Path(path), yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def sections(cls) -> list[str]:
        """The section names (the first part of every dotted key)."""
        return [f.name for f in dataclasses.fields(cls)]


def packaged_config(path: str | os.PathLike) -> Path:
    """`path` itself when it exists, else the config of that name shipped in `configs/`.

    So `--config thumos14_i3d` (or `configs/thumos14_i3d.yaml` from any directory) finds the shipped file.
    """
    path = Path(path)
    if path.exists():
        return path
    shipped = Path(__file__).resolve().parents[1] / "configs" / path.name
    for candidate in (shipped, shipped.with_name(shipped.name + ".yaml")):
        if candidate.is_file():
            return candidate
    return path


def _is_numeric(hint) -> bool:
    """Whether a field's type holds numbers (int, float, optional or in lists)."""
    if hint in (int, float):
        return True
    return any(_is_numeric(arg) for arg in typing.get_args(hint))


def _wants_int(hint) -> bool:
    """Whether the numbers of a field's type are integers."""
    return hint is int or (hint is not float and any(_wants_int(arg) for arg in typing.get_args(hint)))


def range_error(key: str, value, allowed: Range, integer: bool, nullable: bool = False) -> str | None:
    """The message for `value` outside `allowed` (None when inside): "KEY must be an integer between 1 and 4096,
    got 0". Lists are checked item by item; an integer field refuses floats and bools, a float field NaN."""
    if isinstance(value, (list, tuple)):
        return next((error for item in value if (error := range_error(key, item, allowed, integer))), None)
    if value is None and nullable:
        return None
    if integer:
        good = isinstance(value, int) and not isinstance(value, bool) and value in allowed
        kind = "an integer"
    else:
        good = isinstance(value, (int, float)) and not isinstance(value, bool) and value in allowed
        kind = "a number" if math.isinf(allowed.high) else "a finite number"
    if good:
        return None
    wanted = f"{kind} {allowed.describe()}"
    if integer and allowed.low in (0, 1) and not allowed.above and not math.isinf(allowed.high):
        wanted = f"a {'positive' if allowed.low else 'non-negative'} integer <= {show_number(allowed.high)}"
    note = f"; {allowed.note}" if allowed.note else ""
    return f"{key} must be {wanted}{' (or null)' if nullable else ''}, got {show_number(value)}{note}"


def check_ranges(config) -> None:
    """Raise `ConfigError` for the first value of a sectioned config outside the range declared beside its field."""
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        hints = typing.get_type_hints(type(values))
        for key in dataclasses.fields(values):
            allowed = key.metadata.get("range")
            if allowed is None:
                continue
            hint = hints[key.name]
            error = range_error(f"{section.name}.{key.name}", getattr(values, key.name), allowed, _wants_int(hint),
                                type(None) in typing.get_args(hint))
            if error:
                raise ConfigError(error)


def check_seed(seed, name: str = "seed") -> int:
    """`seed` itself when it is an integer in [0, 2**32 - 1] (what numpy, torch and random take); else `ConfigError`."""
    error = range_error(name, seed, Range(*SEED), integer=True)
    if error:
        raise ConfigError(error)
    return seed


def config_value(config, key: str):
    """The value of a dotted key of a sectioned config."""
    section, _, name = key.partition(".")
    return getattr(getattr(config, section), name)


def require_config_memory(config, nbytes: float, keys: list[str], what: str) -> None:
    """Raise `ConfigError` when `nbytes` (a lower bound) exceed this machine's memory, naming among `keys` the
    one furthest above its default: "adapter.hidden_dim=1e+12 needs 4e+12 TB (WHAT); this machine has 24 GB"."""
    defaults = type(config)()

    def growth(key: str) -> float:
        value, default = config_value(config, key) or 0, config_value(defaults, key) or 1
        return float(value) / max(float(default), 1.0)

    key = max(keys, key=growth)
    if growth(key) <= 1:  # nothing above its default: the data's size (a store's width) is what is large
        require_memory(nbytes, what, "lower the sizes of the config")
    require_memory(nbytes, f"{key}={show_number(config_value(config, key))} ({what})", f"lower {key}")


def validate_config(config: SoLaConfig) -> None:
    """Raise `ConfigError` for relations between values (the ranges are checked before, beside each field):
    gathered positions that see padding, a warm-up beyond the budget, names, and sizes beyond this machine's
    memory (a lower bound: at C = 1 channel; `require_fit_memory` checks again with the store's width)."""
    a, m, f, transform = config.adapter, config.matching, config.fit, config.transform
    if a.kernel_size % 2 == 0:
        raise ConfigError(
            f"adapter.kernel_size must be odd for symmetric 'same' padding, got {a.kernel_size}"
        )
    if f.steps and f.warmup_steps >= f.steps:
        raise ConfigError(f"fit.warmup_steps ({f.warmup_steps}) must be below fit.steps ({f.steps})")
    if f.schedule not in ("constant", "cosine"):
        raise ConfigError(f"fit.schedule must be constant or cosine, got {f.schedule!r}")
    check_geometry(a, m)
    for name, policy in (("fit.nan_policy", f.nan_policy), ("transform.nan_policy", transform.nan_policy)):
        if policy not in ("error", "zero", "drop-video"):
            raise ConfigError(f"{name} must be error, zero or drop-video, got {policy!r}")
    for name, device in (("fit.device", f.device), ("transform.device", transform.device)):
        if not (device in ("auto", "cpu", "cuda") or device.startswith("cuda:")):
            raise ConfigError(f"{name} must be auto, cpu, cuda or cuda:N, got {device!r}")
    require_fit_memory(config, 1)
    require_transform_memory(config, 1)


def check_geometry(adapter: AdapterConfig, matching: MatchingConfig) -> None:
    """Raise `ConfigError` when a gathered position would see the zero padding of its window: the one geometry
    check of `sola train` (through `validate_config`) and `sola cost`."""
    radius = receptive_radius(adapter)
    first = matching.start
    last = matching.start + matching.step * (matching.num_positions - 1)
    if first < radius or last > matching.window - 1 - radius:
        raise ConfigError(
            f"gathered positions {first}..{last} (start={matching.start}, step={matching.step}, "
            f"num_positions={matching.num_positions}) must lie in [{radius}, {matching.window - 1 - radius}] "
            f"so that none sees the zero padding of a window of {matching.window} snippets with "
            f"adapter.kernel_size={adapter.kernel_size}, adapter.dilation={adapter.dilation}; lower "
            f"matching.start/step/num_positions, adapter.dilation or adapter.kernel_size, or raise matching.window"
        )


def fit_bytes(dim: int, config: SoLaConfig) -> float:
    """A lower bound of the bytes a fit on `dim`-channel features holds: the adapter and projector with their
    gradients and AdamW state (float32), the batches read (and read ahead), the activations at the gathered
    positions and the health batch."""
    a, m, f = config.adapter, config.matching, config.fit
    hidden, kernel, projector = a.hidden_dim, a.kernel_size, m.projector_dim
    weights = dim * hidden * kernel + hidden * hidden + hidden * dim + projector * dim * 2
    batches = f.batch_size * m.window * dim * (1 + f.prefetch)
    activations = f.batch_size * m.num_positions * (kernel * dim + 2 * hidden + projector)
    return 4.0 * (4 * weights + batches + activations + f.health_windows * m.window * dim)


def transform_bytes(dim: int, config: SoLaConfig) -> float:
    """A lower bound of the bytes transforming one chunk of `transform.chunk_size` snippets holds."""
    a = config.adapter
    weights = dim * a.hidden_dim * a.kernel_size + a.hidden_dim * a.hidden_dim + a.hidden_dim * dim
    return 4.0 * (weights + config.transform.chunk_size * (2 * dim + 2 * a.hidden_dim))


def require_fit_memory(config: SoLaConfig, dim: int) -> None:
    """Raise `ConfigError` when a fit on `dim`-channel features cannot fit this machine's memory."""
    keys = ["adapter.hidden_dim", "adapter.kernel_size", "matching.projector_dim", "matching.window",
            "matching.num_positions", "fit.batch_size", "fit.prefetch", "fit.health_windows"]
    width = "at any feature width" if dim == 1 else f"at C={dim}"
    require_config_memory(config, fit_bytes(dim, config), keys, f"the fit's weights and batches {width}")


def require_transform_memory(config: SoLaConfig, dim: int) -> None:
    """Raise `ConfigError` when transforming `dim`-channel features cannot fit this machine's memory."""
    keys = ["adapter.hidden_dim", "adapter.kernel_size", "transform.chunk_size"]
    width = "at any feature width" if dim == 1 else f"at C={dim}"
    require_config_memory(config, transform_bytes(dim, config), keys, f"the adapter and one chunk {width}")


@dataclass
class AdapterConfig:
    """The gated residual temporal conv: `f + tanh(alpha) * g(f)`."""

    hidden_dim: int = ranged(512, 1, SIZE)  # H
    kernel_size: int = ranged(5, 1, 4095)  # k of the first conv (the only one wider than 1)
    dilation: int = ranged(1, 1, COUNT)


@dataclass
class MatchingConfig:
    """Similarity Matching: window, gathered positions, target kernel, projector."""

    window: int = ranged(23, 1, SIZE)  # L: snippets per training window
    step: int = ranged(2, 1, COUNT)  # s: gap between gathered positions
    start: int = ranged(4, 0, COUNT)  # first gathered position inside the window
    num_positions: int = ranged(8, 2, COUNT, note="a similarity map needs 2")  # N: positions start + s*i, i = 0..N-1
    target_k: float = ranged(16.0, 0.0, 1e6, above=True)  # K in T_ij = sigmoid(K / |i-j|^2)
    projector_dim: int = ranged(512, 1, SIZE)  # Linear(C->512) -> ReLU -> Linear(512->C)
    clamp_eps: float = ranged(1e-5, 0.0, 0.5, above=True, below=True)  # P is clamped to [eps, 1 - eps]


@dataclass
class FitConfig:
    """Optimiser and schedule of the unsupervised fit."""

    epochs: int = ranged(150, 1, COUNT)
    batch_size: int = ranged(256, 1, SIZE)  # windows per optimiser step, summed over all DDP ranks
    lr: float = ranged(1e-4, 0.0, 1e3, above=True)
    weight_decay: float = ranged(0.01, 0.0, 1e3)
    windows_per_video: int = ranged(1, 1, COUNT)  # beyond the reference: more optimiser steps per epoch
    checkpoint_every: int = ranged(10, 1, COUNT)  # epochs between adapter checkpoints
    # Beyond the reference (options): a step budget and an lr schedule.
    steps: int = ranged(0, 0, 10**12)  # > 0: train exactly this many optimiser steps (overrides epochs)
    warmup_steps: int = ranged(0, 0, 10**12)  # linear warm-up from 0 to lr over the first steps
    schedule: str = "constant"  # constant | cosine (decay to 0 over the steps after the warm-up)
    # Guardrails: stop (keeping the last healthy adapter) when a figure says the fit went wrong.
    max_departure: float = ranged(10.0, 0.0, math.inf, above=True)  # mean ||tanh(alpha) g(f)|| / ||f||: the residual dwarfs the features
    collapse_ratio: float = ranged(0.2, 0.0, 1.0, below=True)  # adapted effective rank or angular spread below this x the original's
    frozen_epochs: int = ranged(3, 0, COUNT)  # epochs in a row with the loss unchanged (rel. 1e-5) or at the constant-map loss
    health_windows: int = ranged(16, 1, SIZE)  # the fixed windows on which feature health is measured every epoch
    prefetch: int = ranged(2, 0, 1024)  # batches read ahead in a background thread (0: read in the training loop)
    seed: int = ranged(0, *SEED)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    nan_policy: str = "error"  # error | zero | drop-video: what to do with NaN/Inf features


@dataclass
class TransformConfig:
    """Applying a fitted adapter to whole videos."""

    chunk_size: int = ranged(8192, 1, SIZE)  # snippets per forward pass; longer videos go in overlapping chunks
    device: str = "auto"
    nan_policy: str = "error"  # error | zero | drop-video


class SoLaConfig(SectionedConfig, check=validate_config):
    """Everything needed to fit and apply SoLa."""

    adapter: AdapterConfig
    matching: MatchingConfig
    fit: FitConfig
    transform: TransformConfig


def gathered_positions(matching: MatchingConfig) -> list[int]:
    """Window positions whose adapted features enter the similarity map: start + step*i."""
    return [matching.start + matching.step * i for i in range(matching.num_positions)]


def receptive_radius(adapter: AdapterConfig) -> int:
    """Snippets on each side that one adapted snippet depends on (only the first conv is wide)."""
    return adapter.dilation * (adapter.kernel_size - 1) // 2


def load_config(path: str | os.PathLike | None, overrides: dict[str, Any] | None = None) -> SoLaConfig:
    """`SoLaConfig.load`: a YAML config over the defaults, dotted overrides, validated."""
    return SoLaConfig.load(path, overrides)


def save_config(config: SoLaConfig, path: str | os.PathLike) -> None:
    """`config.save(path)`: the config as YAML, atomically."""
    config.save(path)


# -- shared by every sectioned dataclass config (SoLa's here, the TAL head's in sola.tal.config) --


def read_yaml_sections(path: str | os.PathLike) -> dict[str, Any]:
    """The mapping of sections in a YAML config file; raises `ConfigError` naming the file.

    Refused, each in one line: a path that is missing, a directory or not a regular file (/dev/null, a FIFO:
    `sola.core.inputs.input_file`, never opened), an empty
    (0-byte) file, a file over `MAX_CONFIG_BYTES`, binary content (not UTF-8 text, or NUL bytes), YAML errors
    (with the line and column), Python tags (`!!python/object`: safe loading only) and a top level that is not
    a mapping of sections.
    """
    path = input_file(path, "config file", ConfigError)  # the one check of every input file
    with path.open("rb") as handle:
        raw = handle.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {path} is {path.stat().st_size:,} bytes; a config is at most "
                          f"{MAX_CONFIG_BYTES:,} bytes: is it a config?")
    if not raw:
        raise ConfigError(f"config file {path} is empty (0 bytes); write its sections, or leave out --config")
    try:
        text = raw.decode("utf-8")
        if "\0" in text:
            raise UnicodeDecodeError("utf-8", raw, text.index("\0"), text.index("\0") + 1, "NUL byte")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not a YAML file: binary data at byte {exc.start} (not text); "
                          "pass a YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests lists or mappings too deeply to be a config") from None
    if data is None:  # only comments
        return {}
    if not isinstance(data, dict):
        kind = {"list": "a list", "str": "text", "bool": "true/false"}.get(type(data).__name__, "a number")
        raise ConfigError(f"config file {path} must hold a mapping of sections (e.g. 'fit:' then its keys), "
                          f"not {kind}")
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: "line 3, column 7: expected ',' or ']', but got '<stream end>'"."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = " ".join(part for part in (getattr(exc, "context", None), getattr(exc, "problem", None)) if part)
    problem = " ".join((problem or str(exc)).split())
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def changed_config_keys(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two config dicts; `key (not in the saved run)` for new keys."""
    keys = []
    for section in sorted(set(saved) | set(current)):
        old, new = saved.get(section) or {}, current.get(section) or {}
        for key in sorted(set(old) | set(new)):
            if key not in old:
                keys.append(f"{section}.{key} (not in the saved run)")
            elif old.get(key) != new.get(key):
                keys.append(f"{section}.{key}")
    return keys


def nest_dotted(overrides: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """`{"fit.epochs": 3}` -> `{"fit": {"epochs": 3}}`; `None` values (flags not given) are left out."""
    nested: dict[str, dict[str, Any]] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            section, _, key = dotted.partition(".")
            nested.setdefault(section, {})[key] = value
    return nested


def apply_sections(config: Any, data: dict[str, Any] | None, where: str = "config") -> Any:
    """A copy of a dataclass of dataclass sections with the nested dict `data` applied.

    Values are converted to the annotated types (an int stays int, 1e-4 becomes a float, lists are
    checked item by item). Raises `ConfigError` naming `where` and the key for unknown sections or
    keys and for values of the wrong type.
    """
    config = copy.deepcopy(config)
    sections = [f.name for f in dataclasses.fields(config)]
    for section, values in (data or {}).items():
        if section not in sections:
            raise ConfigError(f"{where}: unknown section {section!r}; expected one of {', '.join(sections)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: section {section!r} must be a mapping, got {type(values).__name__}")
        target = getattr(config, section)
        hints = typing.get_type_hints(type(target))
        known = {f.name for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"{where}: unknown key {section}.{key}; known keys: {', '.join(sorted(known))}")
            setattr(target, key, coerce_value(f"{where}: {section}.{key}", value, hints[key]))
    return config


def coerce_value(name: str, value: Any, hint: Any) -> Any:
    """Convert a YAML or CLI value to the type `hint`; raises `ConfigError` naming `name`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce_value(name, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[-1] if errors else f"{name}: invalid value {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name} must be a list, got {show_number(value)}")
        return [coerce_value(name, v, item) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {show_number(value)}")
    try:
        if hint is int:
            if isinstance(value, str):  # YAML reads 1e12 (no dot) as text: a number all the same
                value = float(value) if any(c in value.lower() for c in ".e") else int(value)
            if isinstance(value, (bool, list, tuple, dict)) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, (bool, list, tuple, dict)):
                raise ValueError
            return float(value)
        if hint is str:
            return "" if value is None else str(value)
    except (TypeError, ValueError, OverflowError):
        kind = {int: "an integer", float: "a number", str: "a string"}.get(hint, hint)
        raise ConfigError(f"{name} must be {kind}, got {show_number(value)}") from None
    return value
