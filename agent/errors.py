"""Errors raised by the ``agent`` package: permanent (fix the input) or temporary (retry).

The two families and :class:`ConfigError` are the project's shared ones (:mod:`env.errors`), re-exported here
so that ``except PermanentError`` catches a permanent error of any package.
"""

from __future__ import annotations

from disaggpilot.env.errors import ConfigError, DisaggpilotError, PermanentError, TemporaryError

__all__ = ["AgentError", "BundleError", "ConfigError", "PermanentError", "PolicyConfigError", "PolicyStateError",
           "TemporaryError"]


class AgentError(DisaggpilotError):
    """Base class of the errors specific to ``agent`` (each is also a permanent or a temporary error)."""


class BundleError(AgentError, PermanentError):
    """A policy bundle is missing, corrupted (hash mismatch) or does not match the environment's spec."""


class PolicyConfigError(AgentError, PermanentError, ValueError):
    """A policy's settings are invalid; the message names the field, the value and the fix."""


class PolicyStateError(AgentError, PermanentError, RuntimeError):
    """A policy was used out of order, e.g. asked to act before ``reset`` prepared it for an episode."""
