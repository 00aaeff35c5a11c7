"""Old flat import paths (`sola.fit`, `sola.stores.npy`, ...) keep working for one release.

The package was regrouped by workflow stage (`sola.adapt.fit`, `sola.data.stores.npy`, ...). A meta-path
finder maps every old name onto the module at its new home, which it imports once, and warns with a
`DeprecationWarning` that names the new path. Both names then refer to the same module object, so state
and monkeypatching are shared.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings

#: old top-level name -> new dotted home (relative to `sola`)
MOVED = {
    "config": "core.config", "runs": "core.runs", "devices": "core.devices", "distributed": "core.distributed",
    "atomic": "core.atomic", "memory": "core.memory", "stats": "core.stats", "errors": "core.errors",
    "adapter": "adapt.adapter", "matching": "adapt.matching", "sampling": "adapt.sampling", "fit": "adapt.fit",
    "schedule": "adapt.schedule", "health": "adapt.health", "transform": "adapt.transform",
    "estimator": "adapt.estimator",
    "stores": "data.stores", "annotations": "data.annotations", "synthetic": "data.synthetic",
    "splice": "data.splice", "predictions": "data.predictions",
    "probe": "evaluate.probe", "probe_config": "evaluate.probe.config", "select": "evaluate.select",
    "select_head": "evaluate.select_head", "tsm": "evaluate.tsm", "metrics": "evaluate.metrics",
    "compare": "experiments.compare", "ablate": "experiments.ablate", "cost": "experiments.cost",
    "detect": "experiments.detect", "demo": "experiments.demo",
    "show": "viz.show", "plots": "viz.plots", "report": "viz.report",
}


def new_name(fullname: str) -> str | None:
    """The current dotted name of an old `sola.*` module name, or None when `fullname` did not move."""
    parts = fullname.split(".")
    if len(parts) < 2 or parts[0] != "sola" or parts[1] not in MOVED:
        return None
    return ".".join(["sola", MOVED[parts[1]], *parts[2:]])


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module):
        # Already executed under its new name; the import system has just set `__spec__` to the alias's
        # spec: give the module its own back (resource loaders such as jinja2's PackageLoader read it).
        module.__spec__ = self.spec


class MovedFinder(importlib.abc.MetaPathFinder):
    """Resolve old module names to their new homes, with a DeprecationWarning."""

    def find_spec(self, fullname, path=None, target=None):
        target_name = new_name(fullname)
        if target_name is None:
            return None
        warnings.warn(f"`{fullname}` moved to `{target_name}`; the old path goes away in the next release",
                      DeprecationWarning, stacklevel=3)
        spec = importlib.machinery.ModuleSpec(fullname, _Alias(target_name))
        return spec


def install() -> None:
    """Put the finder first on `sys.meta_path`, once: the path finder would otherwise load an old child name
    (`sola.stores.npy`) a second time from the aliased parent's `__path__`."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, MovedFinder())
