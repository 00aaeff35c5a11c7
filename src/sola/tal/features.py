"""What features a TAL head was trained on, recorded in its run (`features.json`) and checked on use.

A head only makes sense on features of the kind it was trained on: the same encoder, width,
snippet grid (frames per snippet, stride, frame-rate rule) and, for heads trained on SoLa
features, the same adapter. `features_record` reads that from the store: `sola extract` output
carries `extract_metadata.json`, `sola transform` output a provenance record naming its input
store and adapter; other stores (features made elsewhere) record their width and the grid of
the head's config, with the encoder "unknown". `check_detectable` compares a record with what
`sola detect` will extract and apply, `check_store` with a store given to `sola tal infer`; both
raise one line naming the mismatch and the fix (the adapter comparison is `check_adapter`).
"""

from __future__ import annotations

from pathlib import Path

from sola.core.errors import CheckpointError, ConfigError, StoreError

FEATURES = "features.json"  # in a TAL run directory
FORMAT = "sola-features-1"
UNKNOWN = "unknown"


def extraction_metadata(store) -> dict | None:
    """`sola extract`'s metadata of a store, following `sola transform` records to its input; None if none."""
    from sola.extract import load_metadata

    path = extraction_dir(store.path)
    return load_metadata(path) if path is not None else None


def extraction_dir(path) -> Path | None:
    """The `sola extract` output a store at `path` is (or, following `sola transform` records, was made from);
    None when it is neither."""
    from sola.adapt.transform import PROVENANCE
    from sola.extract import load_metadata

    path = Path(path)
    for _ in range(8):  # a transform of a transform: follow the chain a few steps
        if path.is_dir() and load_metadata(path) is not None:
            return path
        provenance = _provenance(path, PROVENANCE)
        if provenance is None:
            return None
        source = provenance.get("input") if isinstance(provenance.get("input"), dict) else {}
        if not isinstance(source.get("path"), str):
            return None
        path = Path(source["path"])
    return None


def _provenance(path: Path, name: str) -> dict | None:
    for candidate in (path / name, path.with_name(f"{path.name}.{name}")):
        if candidate.exists():  # a store's record: a corrupt one is reported, never taken for none
            from sola.core.runs import read_json

            try:
                return read_json(candidate, None, dict, (), "delete that store and make it again with `sola transform`")
            except CheckpointError as exc:
                raise StoreError(str(exc)) from None
    return None


def adapter_of(store) -> str | None:
    """The SHA-256 of the adapter that made a `sola transform` store (None for other stores)."""
    from sola.adapt.transform import PROVENANCE

    record = _provenance(Path(store.path), PROVENANCE)
    return record.get("adapter") if record else None


def features_record(store, config) -> dict:
    """What a head trained on `store` with TAL `config` was trained on (JSON-ready)."""
    metadata = extraction_metadata(store)
    record = {"format": FORMAT, "dim": int(store.dim()), "adapter": adapter_of(store),
              "store": str(Path(store.path).resolve()), "layout": store.layout}
    if metadata is not None:
        settings = metadata["settings"]
        record.update(encoder=settings.get("encoder", UNKNOWN), output=settings.get("output", "features"),
                      window=settings.get("window"), stride=settings.get("stride"), fps=settings.get("fps"),
                      fps_rule="each video's own frame rate" if settings.get("fps") is None
                      else f"resampled to {settings['fps']:g} fps")
    else:
        data = config.data
        record.update(encoder=UNKNOWN, output="features", window=data.num_frames, stride=data.feat_stride,
                      fps=data.default_fps or None,
                      fps_rule=f"{data.default_fps:g} fps (data.default_fps)" if data.default_fps
                      else "the annotations' fps")
    return record


def describe(record: dict) -> str:
    """One phrase: '1024-d i3d_kinetics400_rgb features, 16 frames every 16, each video's own frame rate'."""
    adapter = f", adapted by SoLa adapter {record['adapter'][:12]}" if record.get("adapter") else ""
    return (f"{record['dim']}-d {record.get('encoder', UNKNOWN)} features, {record.get('window')} frames every "
            f"{record.get('stride')}, {record.get('fps_rule', '?')}{adapter}")


def check_detectable(record: dict, head: str, extracted: dict, adapter_digest: str | None) -> None:
    """Raise `ConfigError` (one line) unless `extracted` features (+ adapter) are what the head was trained on.

    `extracted`: the record of what `sola detect` extracts (`encoder`, `output`, `dim`, `window`,
    `stride`, `fps`); `adapter_digest`: the SHA-256 of `--adapter` (None without one).
    """
    trained = describe(record)
    if record.get("encoder") != extracted["encoder"] or record["dim"] != extracted["dim"]:
        raise ConfigError(
            f"{head} was trained on {trained}, but `sola detect` extracts {extracted['dim']}-d "
            f"{extracted['encoder']} features; train the head on `sola extract` features to detect with it"
        )
    check_adapter(record, head, adapter_digest, (
        "pass that adapter with --adapter",
        "drop --adapter (or train the head on the adapted features)",
        "pass the adapter the head's features were made with"), given="--adapter is")


def check_store(record: dict, head: str, store, config) -> None:
    """Raise `ConfigError` (one line) unless `store` holds features of the kind the head was trained on
    (`sola tal infer`): the same width, the same SoLa adapter (or none) and, when both were made by
    `sola extract`, the same encoder and snippet grid."""
    found = features_record(store, config)
    where = f"{store.path} holds {describe(found)}"
    if record["dim"] != found["dim"]:
        raise ConfigError(f"{store.path} holds features of dim {found['dim']}, but {head} was trained on dim "
                          f"{record['dim']} ({describe(record)}); give the features the head was trained on "
                          "(or train a head on these)")
    if UNKNOWN not in (record.get("encoder", UNKNOWN), found["encoder"]):
        differ = [key for key in ("encoder", "output", "window", "stride", "fps") if record.get(key) != found.get(key)]
        if differ:
            raise ConfigError(f"{head} was trained on {describe(record)}, but {where} (another {', '.join(differ)}); "
                              "extract the features with the head's settings (its features.json)")
    check_adapter(record, head, found["adapter"], (
        "give the store `sola transform` made with it",
        "give the original features (or train the head on the adapted ones)",
        "give the store made with the head's adapter"), given=f"{store.path} was made by")


def check_adapter(record: dict, head: str, digest: str | None, fixes: tuple[str, str, str], given: str) -> None:
    """Raise `ConfigError` unless the SoLa adapter `digest` (None: no adapter) is the one the head's features
    were made with. `fixes`: what to do when it is missing, superfluous or another; `given` names where
    `digest` comes from ("--adapter is")."""
    want, have = record.get("adapter"), digest
    missing, extra, other = fixes
    if want and not have:
        raise ConfigError(f"{head} was trained on SoLa features (adapter {want[:12]}); {missing}")
    if have and not want:
        raise ConfigError(f"{head} was trained on features without a SoLa adapter, but {given} SoLa adapter "
                          f"{have[:12]}; {extra}")
    if want and have and want != have:
        raise ConfigError(f"{head} was trained on features of SoLa adapter {want[:12]}, but {given} "
                          f"{have[:12]}; {other}")


def write_features(run_dir, record: dict) -> None:
    """Write a head run's `features.json`."""
    from sola.core.runs import write_json

    write_json(Path(run_dir) / FEATURES, record)


def read_features(run_dir) -> dict | None:
    """A head run's `features.json` (None for runs written before it was recorded); raises `CheckpointError`
    naming the file for an empty, truncated or garbled one."""
    from sola.core.runs import read_json

    path = Path(run_dir) / FEATURES
    fix = "retrain the head with `sola tal train`"
    record = read_json(path, None, dict, ("dim",), fix)
    if record is not None:
        try:
            int(record["dim"])
        except (ValueError, TypeError):
            raise CheckpointError(f"{path}: 'dim' is {record['dim']!r}, not a number; {fix}") from None
        if not isinstance(record.get("adapter") or "", str):
            raise CheckpointError(f"{path}: 'adapter' is not an adapter digest; {fix}")
    return record


def extraction_grids(store) -> dict[str, dict]:
    """Per video of a `sola extract` store (or a transform of one): `{fps, stride, window}` of its snippets."""
    metadata = extraction_metadata(store)
    if metadata is None:
        return {}
    return {video_id: {"fps": info["fps"], "stride": info["stride"], "window": info["window"]}
            for video_id, info in metadata["videos"].items()}
