"""sola: Soft-Landing (SoLa) adapters for frozen video snippet features.

Fit a tiny temporal adapter on unlabeled features with Similarity Matching, then transform
whole feature stores so that any temporal action localization head reads the adapted features.
"""

__version__ = "0.1.0"

from sola.core.errors import SolaError  # noqa: E402
from sola.core.moved import install as _install_moved  # noqa: E402

_install_moved()  # old flat paths (sola.fit, sola.stores, ...) still import, with a DeprecationWarning

__all__ = ["SolaError", "__version__"]


def __getattr__(name):
    # Lazy so that `import sola` stays cheap (no torch import for `sola --help`).
    if name == "SoLa":
        from sola.adapt.estimator import SoLa

        return SoLa
    if name == "SoLaAdapter":
        from sola.adapt.adapter import SoLaAdapter

        return SoLaAdapter
    if name == "open_store":
        from sola.data.stores import open_store

        return open_store
    raise AttributeError(f"module 'sola' has no attribute {name!r}")
