"""A directory of `.pt` files per video (OpenTAD): a tensor, or a dict with the feature tensor under `key`.

Files are loaded with `torch.load(weights_only=True)`, which refuses pickled code. The writer is
deterministic (an open handle gives the archive a fixed inner name), so a resumed transform is
byte-identical.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np

from sola.core.errors import StoreError
from sola.data.stores.base import KeyedDirectoryStore, KeyedDirectoryWriter, register_layout
from sola.data.stores.sniff import select_feature


def _torch_load(file: Path):
    """`torch.load` of one file admitting tensors only; raises `StoreError` naming the file."""
    import torch  # heavy: only when a .pt store is read

    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own text suggests weights_only=False (running the file's code): name what it asked for only
        asked = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise StoreError(
            f"{file}: refused: it holds more than tensors{f' (it asks for {asked.group(1)})' if asked else ''}, "
            "and loading it could run code; re-save the features as a plain tensor (torch.save(tensor, file))"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise StoreError(
            f"{file}: not a readable .pt file ({_first_sentence(exc)}); it is truncated or corrupt: "
            "re-download or re-extract it"
        ) from None


def _first_sentence(exc: BaseException) -> str:
    """The first sentence of an error's text (torch's run on for lines), or its type when it has none."""
    text = str(exc).strip().split("\n")[0].split(". ")[0]
    return text or type(exc).__name__


class PtWriter(KeyedDirectoryWriter):
    """One `.pt` per video (`torch.save` of a tensor, or of `{key: tensor}` like the source)."""

    extension = ".pt"
    layout = "pt"

    def dump(self, handle, video_id: str, features: np.ndarray) -> None:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(features))
        # Saved to an open handle, the archive's inner folder is always "archive": no file name inside.
        torch.save(self.payload(tensor), handle)


@register_layout("pt")
class PtStore(KeyedDirectoryStore):
    """`DIR/{prefix}{video_id}{suffix}.pt`: a tensor, or a dict with the feature tensor under `key`."""

    extensions = (".pt", ".pth")
    writer_class = PtWriter

    def load_entry(self, file: Path) -> tuple[np.ndarray, str | None]:
        import torch

        value, key = select_feature(_torch_load(file), self.key, str(file))
        if isinstance(value, torch.Tensor):
            if value.dtype == torch.bfloat16:
                raise StoreError(f"{file}: bfloat16 features have no NumPy dtype; re-save them as float16/32")
            return value.detach().cpu().numpy(), key
        if isinstance(value, np.ndarray):
            return value, key
        raise StoreError(f"{file}: holds a {type(value).__name__}, not a feature tensor")
