"""Errors raised by the ``agent`` package: permanent (fix the input) or temporary (retry)."""

from __future__ import annotations


class AgentError(Exception):
    """Base class of every error raised by ``agent``."""


class PermanentError(AgentError):
    """Retrying cannot help: a bad bundle, a bad policy config."""


class TemporaryError(AgentError):
    """May pass on retry.

    Args:
        message: what failed.
        delay_s: suggested wait before retrying (seconds).
    """

    def __init__(self, message: str, delay_s: float = 1.0) -> None:
        super().__init__(message)
        self.delay_s = delay_s


class BundleError(PermanentError):
    """A policy bundle is missing, corrupted (hash mismatch) or does not match the environment's spec."""


class PolicyConfigError(PermanentError, ValueError):
    """A policy's settings are invalid; the message names the field, the value and the fix."""


class PolicyStateError(PermanentError, RuntimeError):
    """A policy was used out of order, e.g. asked to act before ``reset`` prepared it for an episode."""
