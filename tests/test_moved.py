"""The regrouped package: old flat import paths resolve to the new modules, with a DeprecationWarning."""

import importlib
import subprocess
import sys
import warnings

import pytest

from sola.core.moved import MOVED, new_name


@pytest.mark.parametrize("old", sorted(MOVED))
def test_every_old_top_level_path_is_the_new_module(old):
    new = importlib.import_module(f"sola.{MOVED[old]}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sys.modules.pop(f"sola.{old}", None)
        aliased = importlib.import_module(f"sola.{old}")
    assert aliased is new
    assert any(issubclass(w.category, DeprecationWarning) and f"sola.{MOVED[old]}" in str(w.message)
               for w in caught)


def test_old_submodule_paths_and_from_imports_resolve():
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    import sola.stores.npy\nexcept DeprecationWarning as w:\n    print('warned', w)\n"
            "warnings.simplefilter('ignore')\n"
            "from sola.stores.npy import NpyStore\nimport sola.data.stores.npy as new\n"
            "from sola.fit import fit_adapter\nfrom sola.adapt.fit import fit_adapter as f2\n"
            "print(NpyStore.__module__, fit_adapter is f2)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "warned `sola.stores` moved to `sola.data.stores`" in out
    assert "sola.data.stores.npy True" in out


def test_new_names_and_unmoved_names():
    assert new_name("sola.metrics.detection") == "sola.evaluate.metrics.detection"
    assert new_name("sola.tal.model") is None and new_name("sola") is None and new_name("numpy.fit") is None


def test_top_level_holds_about_ten_modules():
    import pkgutil

    import sola

    names = [m.name for m in pkgutil.iter_modules(sola.__path__)]
    assert set(names) == {"__main__", "adapt", "cli", "core", "data", "evaluate", "experiments", "extract", "tal",
                          "viz"}
    assert not set(names) & set(MOVED)  # no old module left beside its alias


def test_an_alias_leaves_the_module_its_own_spec():
    import sola.viz.report as new

    sys.modules.pop("sola.report", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        importlib.import_module("sola.report")
    assert new.__spec__.name == "sola.viz.report" and new.__spec__.submodule_search_locations
