"""Dataclass configs with the reference defaults; YAML files override them, CLI flags override YAML.

Every default of the SoLa reference lives here once:
adapter (H=512, k=5, dilation 1), Similarity Matching (L=23, s=2, start=4, N=8, K=16,
projector 512) and fitting (AdamW lr 1e-4, weight decay 0.01, batch 256, 150 epochs,
a checkpoint every 10 epochs, one window per video per epoch, a constant lr).
Beyond the reference (options, off by default): a budget in optimiser steps (`fit.steps`), a
linear warm-up and cosine decay; the fit's guardrails (`fit.max_departure`, `fit.collapse_ratio`,
`fit.frozen_epochs`) only stop a fit that has diverged or collapsed.
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


@typing.dataclass_transform(field_specifiers=(dataclasses.field,))
class SectionedConfig:
    """The one config pattern of every stage: a dataclass of dataclass sections.

    Defaults are the reference values; a YAML file of sections overrides them, and dotted overrides
    (`{"fit.lr": 1e-4}`, the CLI's `--set` and its named flags) override the file. A subclass lists
    its sections as annotations (each defaults to its dataclass's defaults) and names its checker:
    `class SoLaConfig(SectionedConfig, check=validate_config)`; it becomes a dataclass.
    """

    _check = None  # the subclass's checker: raises `ConfigError` for a bad value

    def __init_subclass__(cls, check=None, **kwargs):
        super().__init_subclass__(**kwargs)
        if check is not None:
            cls._check = staticmethod(check)
        for name, section in typing.get_type_hints(cls).items():
            if name not in vars(cls):
                setattr(cls, name, field(default_factory=section))
        dataclass(cls)

    def validate(self):
        """Check every value; raise `ConfigError` naming the key and the fix. Returns the config."""
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
    if path.is_file():
        return path
    shipped = Path(__file__).resolve().parents[1] / "configs" / path.name
    for candidate in (shipped, shipped.with_name(shipped.name + ".yaml")):
        if candidate.is_file():
            return candidate
    return path


def check_positive_integers(values: dict[str, Any]) -> None:
    """Raise `ConfigError` naming the first dotted key whose value is not an integer >= 1 (bools refused)."""
    for name, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def validate_config(config: SoLaConfig) -> None:
    """Raise `ConfigError` for values out of range or gathered positions that see padding."""
    a, m, f, transform = config.adapter, config.matching, config.fit, config.transform
    positive = {
        "adapter.hidden_dim": a.hidden_dim,
        "adapter.kernel_size": a.kernel_size,
        "adapter.dilation": a.dilation,
        "matching.window": m.window,
        "matching.step": m.step,
        "matching.num_positions": m.num_positions,
        "matching.projector_dim": m.projector_dim,
        "fit.epochs": f.epochs,
        "fit.batch_size": f.batch_size,
        "fit.windows_per_video": f.windows_per_video,
        "fit.checkpoint_every": f.checkpoint_every,
        "fit.health_windows": f.health_windows,
        "transform.chunk_size": transform.chunk_size,
    }
    check_positive_integers(positive)
    if a.kernel_size % 2 == 0:
        raise ConfigError(
            f"adapter.kernel_size must be odd for symmetric 'same' padding, got {a.kernel_size}"
        )
    if m.num_positions < 2:
        raise ConfigError("matching.num_positions must be at least 2 to form a similarity map")
    if not isinstance(m.start, int) or m.start < 0:
        raise ConfigError(f"matching.start must be a non-negative integer, got {m.start!r}")
    if not 0 < m.clamp_eps < 0.5:
        raise ConfigError(f"matching.clamp_eps must be in (0, 0.5), got {m.clamp_eps}")
    if not (math.isfinite(m.target_k) and m.target_k > 0):
        raise ConfigError(f"matching.target_k must be positive, got {m.target_k}")
    if not (math.isfinite(f.lr) and f.lr > 0 and math.isfinite(f.weight_decay) and f.weight_decay >= 0):
        raise ConfigError(f"fit.lr must be > 0 and fit.weight_decay >= 0, both finite (got {f.lr}, {f.weight_decay})")
    for name, value in (("fit.steps", f.steps), ("fit.warmup_steps", f.warmup_steps),
                        ("fit.frozen_epochs", f.frozen_epochs), ("fit.prefetch", f.prefetch)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{name} must be a non-negative integer (0: off), got {value!r}")
    if f.steps and f.warmup_steps >= f.steps:
        raise ConfigError(f"fit.warmup_steps ({f.warmup_steps}) must be below fit.steps ({f.steps})")
    if f.schedule not in ("constant", "cosine"):
        raise ConfigError(f"fit.schedule must be constant or cosine, got {f.schedule!r}")
    if not (f.max_departure > 0):  # also refuses NaN
        raise ConfigError(f"fit.max_departure must be > 0 (inf: no bound), got {f.max_departure}")
    if not 0 <= f.collapse_ratio < 1:
        raise ConfigError(f"fit.collapse_ratio must be in [0, 1) (0: no collapse check), got {f.collapse_ratio}")
    radius = receptive_radius(a)
    positions = gathered_positions(m)
    first, last = positions[0], positions[-1]
    if first < radius or last > m.window - 1 - radius:
        raise ConfigError(
            f"gathered positions {first}..{last} (start={m.start}, step={m.step}, "
            f"num_positions={m.num_positions}) must lie in [{radius}, {m.window - 1 - radius}] "
            f"so that none sees the zero padding of a window of {m.window} snippets with "
            f"kernel_size={a.kernel_size}, dilation={a.dilation}; lower start/step/num_positions "
            f"or raise matching.window"
        )
    for name, policy in (("fit.nan_policy", f.nan_policy), ("transform.nan_policy", transform.nan_policy)):
        if policy not in ("error", "zero", "drop-video"):
            raise ConfigError(f"{name} must be error, zero or drop-video, got {policy!r}")
    if not (f.device in ("auto", "cpu", "cuda") or f.device.startswith("cuda:")):
        raise ConfigError(f"fit.device must be auto, cpu, cuda or cuda:N, got {f.device!r}")


@dataclass
class AdapterConfig:
    """The gated residual temporal conv: `f + tanh(alpha) * g(f)`."""

    hidden_dim: int = 512  # H
    kernel_size: int = 5  # k of the first conv (the only one wider than 1)
    dilation: int = 1


@dataclass
class MatchingConfig:
    """Similarity Matching: window, gathered positions, target kernel, projector."""

    window: int = 23  # L: snippets per training window
    step: int = 2  # s: gap between gathered positions
    start: int = 4  # first gathered position inside the window
    num_positions: int = 8  # N: positions start + s*i, i = 0..N-1
    target_k: float = 16.0  # K in T_ij = sigmoid(K / |i-j|^2)
    projector_dim: int = 512  # Linear(C->512) -> ReLU -> Linear(512->C)
    clamp_eps: float = 1e-5  # P is clamped to [eps, 1 - eps]


@dataclass
class FitConfig:
    """Optimiser and schedule of the unsupervised fit."""

    epochs: int = 150
    batch_size: int = 256  # windows per optimiser step, summed over all DDP ranks
    lr: float = 1e-4
    weight_decay: float = 0.01
    windows_per_video: int = 1  # beyond the reference: more optimiser steps per epoch
    checkpoint_every: int = 10  # epochs between adapter checkpoints
    # Beyond the reference (options): a step budget and an lr schedule.
    steps: int = 0  # > 0: train exactly this many optimiser steps (overrides epochs)
    warmup_steps: int = 0  # linear warm-up from 0 to lr over the first steps
    schedule: str = "constant"  # constant | cosine (decay to 0 over the steps after the warm-up)
    # Guardrails: stop (keeping the last healthy adapter) when a figure says the fit went wrong.
    max_departure: float = 10.0  # mean ||tanh(alpha) g(f)|| / ||f||: the residual dwarfs the features
    collapse_ratio: float = 0.2  # adapted effective rank or angular spread below this x the original's
    frozen_epochs: int = 3  # epochs in a row with the loss unchanged (rel. 1e-5) or at the constant-map loss
    health_windows: int = 16  # the fixed windows on which feature health is measured every epoch
    prefetch: int = 2  # batches read ahead in a background thread (0: read in the training loop)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    nan_policy: str = "error"  # error | zero | drop-video: what to do with NaN/Inf features


@dataclass
class TransformConfig:
    """Applying a fitted adapter to whole videos."""

    chunk_size: int = 8192  # snippets per forward pass; longer videos go in overlapping chunks
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
    """The mapping of sections in a YAML config file; raises `ConfigError` naming the file."""
    path = input_file(path, "config file", ConfigError)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not text (binary data); pass a YAML file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


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
            raise ConfigError(f"{name} must be a list, got {value!r}")
        return [coerce_value(name, v, item) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    try:
        if hint is int:
            if isinstance(value, (bool, list, tuple, dict)) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if hint is float:
            if isinstance(value, (bool, list, tuple, dict)):
                raise ValueError
            return float(value)
        if hint is str:
            return "" if value is None else str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value
