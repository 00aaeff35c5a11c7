"""Device resolution, input checks and the lazy package API of `sola.extract` (no weights needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sola.core.devices import resolve_device
from sola.core.errors import DeviceError, ExtractError
from sola.extract.encoder import SnippetEncoder, kinetics400_labels


def test_device_names_resolve_or_fail_with_the_fix():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DeviceError, match="unknown device 'gpu0'; use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available here; use cpu or auto"):
            resolve_device("cuda")


def test_encode_rejects_float_or_channel_first_clips():
    encoder = SnippetEncoder.__new__(SnippetEncoder)  # the check runs before any model is needed
    with pytest.raises(ExtractError, match=r"clips must be uint8 \(B, T, H, W, 3\)"):
        encoder.encode(np.zeros((1, 16, 224, 224, 3), np.float32))
    with pytest.raises(ExtractError, match=r"clips must be uint8"):
        encoder.encode(np.zeros((1, 3, 16, 224, 224), np.uint8))


def test_packaged_label_list_is_400_sorted_unique_names():
    labels = kinetics400_labels()
    assert len(labels) == len(set(labels)) == 400 and list(labels) == sorted(labels)
    assert labels[0] == "abseiling" and labels[-1] == "zumba"


def test_package_exports_resolve_lazily():
    import sola.extract as extract

    assert callable(extract.extract_videos) and callable(extract.classify_video)
    with pytest.raises(AttributeError):
        extract.no_such_name  # noqa: B018
