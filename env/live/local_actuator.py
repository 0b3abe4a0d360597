"""The local-process actuator: ``env.backend.Actuator`` over the replica launcher (the test rig's cluster)."""

from __future__ import annotations

import dataclasses
import logging

from disaggpilot.env.backend import ClusterAction, PoolTarget
from disaggpilot.env.live.launcher import Launcher, ReplicaStartError
from disaggpilot.env.live.launcher_config import ReplicaKnobs

log = logging.getLogger("disaggpilot.actuator.local")


class LocalProcessActuator:
    """Applies replica-count and batch-knob targets to local replica processes.

    ``apply`` returns at once; the launcher's monitor converges on the targets (cold starts, drains, and
    replacing replicas whose engine arguments changed, as a Kubernetes rollout would). A failed replica start
    since the last call is reported as :class:`ReplicaStartError` (retryable) after the targets are set, so
    the caller retries with backoff and the launcher keeps trying.

    Args:
        launcher: the launcher that owns the processes (started, and closed by its owner).
    """

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher

    def apply(self, action: ClusterAction) -> None:
        """Set each pool's target of ``action``; a role it leaves out keeps its target."""
        for role, target in action.pools.items():
            replicas, knobs = self._resolve(role, target)
            self.launcher.set_target(role, replicas, knobs)
            log.info("target %s: %d replicas, %s", role, replicas, knobs)
        failures = self.launcher.take_failures()
        if failures:
            names = ", ".join(f"{f.name} ({f.reason})" for f in failures)
            raise ReplicaStartError(f"replica starts failed: {names}; the launcher retries",
                                    delay_s=self.launcher.config.restart_backoff_s)

    def _resolve(self, role: str, target: PoolTarget) -> tuple[int, ReplicaKnobs]:
        """Fill what ``target`` leaves ``None`` from the role's current target (or its running replicas)."""
        current = self.launcher.target(role)
        if current is None:
            active = self.launcher.counts(role)
            current = (active["starting"] + active["ready"],
                       self.launcher.config.knobs.get(role) or ReplicaKnobs())
        replicas, knobs = current
        changes = {name: value for name, value in (("max_num_seqs", target.max_num_seqs),
                                                     ("max_num_batched_tokens", target.max_num_batched_tokens))
                   if value is not None}
        return (target.replicas if target.replicas is not None else replicas,
                dataclasses.replace(knobs, **changes))
