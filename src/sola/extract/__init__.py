"""Feature extraction: videos -> Kinetics-400 I3D snippet features (`sola extract`, `sola classify`).

Heavy imports (torch, PyAV) happen inside the functions, so importing this package is cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["extract_videos", "classify_video", "encode_video", "load_metadata", "ExtractSummary", "SnippetEncoder"]


def __getattr__(name: str) -> Any:
    # Lazy: `from sola.extract import extract_videos` works without importing torch up front.
    if name in ("extract_videos", "classify_video", "encode_video", "load_metadata", "ExtractSummary"):
        from sola.extract import extract

        return getattr(extract, name)
    if name == "SnippetEncoder":
        from sola.extract.encoder import SnippetEncoder

        return SnippetEncoder
    raise AttributeError(f"module 'sola.extract' has no attribute {name!r}")
