"""The one error hierarchy of disaggpilot, and the ``env`` package's errors.

Every error the project raises is a :class:`DisaggpilotError` and belongs to one of two families, so callers
act on the type whichever package raised it: :class:`PermanentError` (fix the input, retrying will not help)
and :class:`TemporaryError` (retry after ``delay_s``). Each package also has its own base (:class:`EnvError`
here, ``agent.errors.AgentError``, ``controller.errors.ControllerError``) for "anything from that package";
a specific error subclasses its package's base and one family. :class:`ConfigError` and :func:`require` are
shared: every package validates its settings with them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from typing import Any


class DisaggpilotError(Exception):
    """Base class of every error raised by ``env``, ``agent`` or ``controller``."""


class PermanentError(DisaggpilotError):
    """A failure that retrying cannot fix: bad configuration, bad trace, bad model file, a refused action."""


class TemporaryError(DisaggpilotError):
    """A failure that may pass: a scrape timed out, a server answered 503.

    Args:
        message: what failed.
        delay_s: suggested (shortest sensible) wait before retrying (seconds).
    """

    def __init__(self, message: str, delay_s: float = 1.0) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class ConfigError(PermanentError, ValueError):
    """A setting is out of range or inconsistent; the message names the key, the value and the fix."""


class EnvError(DisaggpilotError):
    """Base class of the errors specific to ``env`` (each is also a permanent or a temporary error)."""


class FencedError(EnvError, PermanentError):
    """A write refused before it was sent: this process no longer holds the right to write (it lost the
    leader lease), so another replica may be acting; the decision is abandoned, not retried."""


class TraceError(EnvError, PermanentError, ValueError):
    """A trace file is malformed; the message names the file, line and column."""


class CatalogError(EnvError, PermanentError, ValueError):
    """A GPU or model description is missing a field or holds an impossible value."""


class BackendError(EnvError, PermanentError):
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
    """``value`` (a list, tuple or a config's list) as a non-empty list of seeds, else :class:`ConfigError`."""
    is_list = isinstance(value, Sequence) and not isinstance(value, str | bytes)
    require(is_list and len(value) > 0, key, value, f"list integers >= 0, e.g. {key}=[0,1,2]")  # type: ignore[arg-type]
    assert isinstance(value, Sequence)
    return [require_seed(f"{key}[{index}]", seed) for index, seed in enumerate(value)]


def require_seconds(key: str, value: object, optional: bool = False, fix: str = "") -> float | None:
    """``value`` as a positive duration in seconds (or None when ``optional``), else :class:`ConfigError`."""
    if optional and value is None:
        return None
    require(is_number(value) and float(value) > 0, key, value,  # type: ignore[arg-type]
            fix or "use a positive number of seconds" + (", or null" if optional else ""))
    return float(value)  # type: ignore[arg-type]


SCALARS: dict[type, str] = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                            type(None): "null"}
"""The field types :func:`check_types` checks, and how a message names them."""


def check_types(settings: object, prefix: str) -> None:
    """Raise :class:`ConfigError` naming ``<prefix>.<field>`` for a dataclass field whose value is not of its
    annotated type: scalars (``int``, ``float``, ``bool``, ``str``), ``X | None`` and ``list[X]`` of scalars.

    Settings built from a command line get whatever the user typed (``env.interval_s=abc`` is a string); this
    runs first in ``__post_init__`` so that range checks compare numbers. Other annotations (nested settings,
    mappings, ``Any``) are left to their own validation.
    """
    hints = typing.get_type_hints(type(settings))
    for item in dataclasses.fields(settings):  # type: ignore[arg-type]
        allowed = _checkable(hints[item.name])
        value = getattr(settings, item.name)
        if allowed is not None and not any(_matches(value, kind) for kind in allowed):
            require(False, f"{prefix}.{item.name}", value, "use " + " or ".join(_describe(k) for k in allowed))


def _checkable(hint: Any) -> list[Any] | None:
    """The alternatives of ``hint`` when every one is a scalar or a list of scalars; else None (not checked)."""
    alternatives = list(typing.get_args(hint)) if isinstance(hint, types.UnionType) else [hint]
    simple = all(kind in SCALARS or (typing.get_origin(kind) is list and typing.get_args(kind)[0] in SCALARS)
                 for kind in alternatives)
    return alternatives if simple else None


def _matches(value: object, kind: Any) -> bool:
    if typing.get_origin(kind) is list:
        return isinstance(value, list | tuple) and all(_matches(item, typing.get_args(kind)[0]) for item in value)
    if kind is float:
        return is_number(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is list:
        return f"a list of {SCALARS[typing.get_args(kind)[0]].removeprefix('a ').removeprefix('an ')}s, e.g. [1, 2]"
    return SCALARS[kind]
