"""User-facing errors in configuration and payload files (one line each)."""


class ConfigError(ValueError):
    """A settings or devices file is unusable; the message names the file and the entry."""


class PayloadError(ValueError):
    """A payload is unusable; the message names the file and the field."""
