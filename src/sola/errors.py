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
