"""Actuators: what turns a shielded ``ClusterAction`` into a change of the cluster.

The protocol lives in ``env.backend`` so the live backend's actuators (``env/live/``) implement it without
importing the controller; this module adds the two that need no cluster. An actuator raises a
``TemporaryError`` (with ``delay_s``) for what may pass and anything else for what will not; the
loop retries the former with backoff and falls back after repeated failures.
"""

from __future__ import annotations

import logging

from disaggpilot.env.backend import Actuator, ClusterAction, ClusterBackend

__all__ = ["Actuator", "BackendActuator", "DryRunActuator"]

log = logging.getLogger("disaggpilot.controller.actuator")


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
