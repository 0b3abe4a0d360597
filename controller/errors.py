"""Errors raised by the ``controller`` package; the loop acts on their type.

:class:`TemporaryError` is retried with the configured backoff (never sooner than its ``delay_s``);
:class:`PermanentError` is not retried: the loop switches to the fallback planner and counts the reason.
"""

from __future__ import annotations


class ControllerError(Exception):
    """Base class of every error raised by ``controller``."""


class PermanentError(ControllerError):
    """Retrying cannot help: bad settings, a refused action, a broken source."""


class TemporaryError(ControllerError):
    """May pass on retry: a scrape timed out, the API server answered 503.

    Args:
        message: what failed.
        delay_s: shortest sensible wait before retrying (seconds).
    """

    def __init__(self, message: str, delay_s: float = 1.0) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class ConfigError(PermanentError, ValueError):
    """A controller setting is invalid; the message names the key, the value and the fix."""


class ActuatorError(PermanentError):
    """The actuator refused an action for good (forbidden, unknown workload)."""


def require(condition: bool, key: str, value: object, fix: str) -> None:
    """Raise :class:`ConfigError` naming ``key``, ``value`` and ``fix`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(f"{key}={value!r} is invalid: {fix}")
