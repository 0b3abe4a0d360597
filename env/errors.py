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


def is_number(value: object) -> bool:
    """Whether ``value`` is an int or a float (a bool, a string or None is not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def require_seed(key: str, value: object) -> int:
    """``value`` as a seed: a non-negative integer, else :class:`ConfigError` naming ``key``."""
    require(isinstance(value, int) and not isinstance(value, bool) and value >= 0, key, value,
            "use a non-negative integer, e.g. 0")
    assert isinstance(value, int)
    return value


def require_seeds(key: str, value: object) -> list[int]:
    """``value`` as a non-empty list of seeds, else :class:`ConfigError` naming ``key``."""
    require(isinstance(value, list | tuple) and len(value) > 0, key, value, f"list integers >= 0, e.g. {key}=[0,1,2]")
    assert isinstance(value, list | tuple)
    return [require_seed(f"{key}[{index}]", seed) for index, seed in enumerate(value)]


def require_seconds(key: str, value: object, optional: bool = False, fix: str = "") -> float | None:
    """``value`` as a positive duration in seconds (or None when ``optional``), else :class:`ConfigError`."""
    if optional and value is None:
        return None
    require(is_number(value) and float(value) > 0, key, value,  # type: ignore[arg-type]
            fix or "use a positive number of seconds" + (", or null" if optional else ""))
    return float(value)  # type: ignore[arg-type]
