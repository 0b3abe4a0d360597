"""Errors raised by the ``env`` package.

Two families, so callers act on the type: :class:`PermanentError` (fix the input, retrying will not help)
and :class:`TemporaryError` (retry after ``delay_s``).
"""

from __future__ import annotations


class EnvError(Exception):
    """Base class of every error raised by ``env``."""


class PermanentError(EnvError):
    """A failure that retrying cannot fix: bad configuration, bad trace, bad model file."""


class TemporaryError(EnvError):
    """A failure that may pass: a scrape timed out, a server answered 503.

    Args:
        message: what failed.
        delay_s: suggested wait before retrying (seconds).
    """

    def __init__(self, message: str, delay_s: float = 1.0) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class ConfigError(PermanentError, ValueError):
    """A setting is out of range or inconsistent; the message names the key, the value and the fix."""


class TraceError(PermanentError, ValueError):
    """A trace file is malformed; the message names the file, line and column."""


class CatalogError(PermanentError, ValueError):
    """A GPU or model description is missing a field or holds an impossible value."""


class BackendError(PermanentError):
    """A backend was used out of order (advance before reset, apply after close)."""


def require(condition: bool, key: str, value: object, fix: str) -> None:
    """Raise :class:`ConfigError` naming ``key``, ``value`` and ``fix`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"{key}={value!r} is invalid: {fix}")
