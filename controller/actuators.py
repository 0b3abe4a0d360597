"""Actuators: what turns a shielded ``ClusterAction`` into a change of the cluster.

Only :class:`BackendActuator` (any ``ClusterBackend``: the simulator here) and :class:`DryRunActuator`
exist in this slice; the Kubernetes and local-process actuators come with the live backend (``env/live/``).
An actuator raises a ``TemporaryError`` (with ``delay_s``) for what may pass and anything else for what will
not; the loop retries the former with backoff and falls back after repeated failures.
"""

from __future__ import annotations

import logging
from typing import Protocol, runtime_checkable

from env.backend import ClusterAction, ClusterBackend

log = logging.getLogger("disaggpilot.controller.actuator")


@runtime_checkable
class Actuator(Protocol):
    """Applies targets (not deltas) to the cluster."""

    def apply(self, action: ClusterAction) -> None:
        """Set the targets of ``action``; raise on failure."""
        ...


class BackendActuator:
    """Applies actions through a backend's ``apply`` (the simulator's, or a live backend's).

    Args:
        backend: the cluster backend.
    """

    def __init__(self, backend: ClusterBackend) -> None:
        self.backend = backend

    def apply(self, action: ClusterAction) -> None:
        """Forward ``action`` to the backend."""
        self.backend.apply(action)


class DryRunActuator:
    """Logs each action and keeps it in :attr:`applied`; changes nothing."""

    def __init__(self) -> None:
        self.applied: list[ClusterAction] = []

    def apply(self, action: ClusterAction) -> None:
        """Record and log ``action``."""
        self.applied.append(action)
        targets = {role: target.replicas for role, target in action.pools.items()}
        log.info("dry run: would set replicas %s", targets)
