"""Errors raised by the ``controller`` package; the loop acts on their type.

:class:`TemporaryError` is retried with the configured backoff (never sooner than its ``delay_s``);
:class:`PermanentError` is not retried: the loop switches to the fallback planner and counts the reason.
The two families and :class:`ConfigError` (which :func:`env.errors.require` raises) are the project's shared ones
(:mod:`env.errors`), re-exported here, so the loop's ``except`` sees every package's errors by family.
"""

from __future__ import annotations

from disaggpilot.env.errors import ConfigError, DisaggpilotError, PermanentError, TemporaryError

__all__ = ["ActuatorError", "ConfigError", "ControllerError", "PermanentError", "TemporaryError"]


class ControllerError(DisaggpilotError):
    """Base class of the errors specific to ``controller`` (each is also a permanent or a temporary error)."""


class ActuatorError(ControllerError, PermanentError):
    """The actuator refused an action for good (forbidden, unknown workload)."""
