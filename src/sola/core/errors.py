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


class UnsafePickleError(StoreError, PredictionError):
    """A pickle (features or predictions) asks for something other than NumPy arrays, dicts, lists and scalars."""


class SolaWarning(UserWarning):
    """Something about the input that does not stop the command but changes what it computes (videos
    left out, values unknown); the CLI prints each as one line."""


class SolaNote(SolaWarning):
    """What a command did with its input that the user should know (segments kept as written, videos scored);
    the CLI prints each as one `note:` line."""


class DeviceError(ConfigError):
    """A device name is unknown, or names CUDA on a machine without it."""
