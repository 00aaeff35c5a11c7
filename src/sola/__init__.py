"""sola: Soft-Landing (SoLa) adapters for frozen video snippet features.

Fit a tiny temporal adapter on unlabeled features with Similarity Matching, then transform
whole feature stores so that any temporal action localization head reads the adapted features.
"""

__version__ = "0.1.0"

from sola.errors import SolaError  # noqa: E402

__all__ = ["SolaError", "__version__"]


def __getattr__(name):
    # Lazy so that `import sola` stays cheap (no torch import for `sola --help`).
    if name == "SoLa":
        from sola.estimator import SoLa

        return SoLa
    if name == "SoLaAdapter":
        from sola.adapter import SoLaAdapter

        return SoLaAdapter
    if name == "open_store":
        from sola.stores import open_store

        return open_store
    raise AttributeError(f"module 'sola' has no attribute {name!r}")
