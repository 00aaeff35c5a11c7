"""Exception types. The CLI turns any `SolaError` into one line and a non-zero exit."""


class SolaError(Exception):
    """Base class of every error that `sola` reports to a user (bad input, bad config)."""


class ConfigError(SolaError):
    """A configuration value is invalid or unknown."""


class StoreError(SolaError):
    """A feature store is missing, corrupt or inconsistent."""


class AnnotationError(SolaError):
    """An annotation file is missing, malformed or inconsistent with the features."""


class CheckpointError(SolaError):
    """A checkpoint or run directory is missing or does not match the request."""


class ExtractError(SolaError):
    """A video cannot be decoded, or the encoder weights cannot be fetched or verified."""


class PredictionError(SolaError):
    """A prediction (detection or proposal) file is missing, malformed or inconsistent."""


class EmptyVideoError(StoreError):
    """A video's features hold no snippets (or no channels)."""


class UnsafePickleError(StoreError):
    """A pickle asks for something other than NumPy arrays, dicts, lists and scalars."""


class DeviceError(ConfigError):
    """A device name is unknown, or names CUDA on a machine without it."""
