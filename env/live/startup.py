"""Bringing up a local-process cluster before the control loop starts (``controller.actuator=local``).

The daemon's local mode and the local cluster's rig (``localcluster.rig``) both start the scenario's initial
replicas through the launcher, then wait until Prometheus has a target for every selector, so the live
backend's start-up check passes.
"""

from __future__ import annotations

import time

from disaggpilot.env.live.config import PrometheusSourceConfig
from disaggpilot.env.live.errors import SelectorMatchesNothingError
from disaggpilot.env.live.launcher import Launcher, ReplicaStartError, last_log_line
from disaggpilot.env.live.launcher_config import ReplicaKnobs
from disaggpilot.env.live.source import PrometheusSource
from disaggpilot.env.scenario import ScenarioConfig


class ReplicasNotReadyError(ReplicaStartError):
    """The scenario's initial replicas were not all ready in time (retryable: ports, a slow machine)."""


def start_initial_replicas(launcher: Launcher, scenario: ScenarioConfig, timeout_s: float) -> None:
    """Converge every enabled pool of ``scenario`` on its initial replicas and knobs; wait until all are ready.

    Raises:
        ReplicasNotReadyError: they were not all ready within ``timeout_s`` (the launcher's failures are named).
    """
    for role in scenario.cluster.enabled_roles():
        pool = getattr(scenario.cluster, role)
        launcher.set_target(role, pool.replicas, ReplicaKnobs(pool.max_num_seqs, pool.max_num_batched_tokens))
    wanted = {role: getattr(scenario.cluster, role).replicas for role in scenario.cluster.enabled_roles()}

    def all_ready() -> bool:
        return all(launcher.counts(role)["ready"] >= count for role, count in wanted.items())

    if not launcher.wait_until(all_ready, timeout_s):
        failures = "; ".join(f"{f.name}: {f.reason}" for f in launcher.failures) or "none failed"
        raise ReplicasNotReadyError(f"replicas {wanted} not ready within {timeout_s:.0f} s ({failures}; "
                                    f"{_unready_summary(launcher)}); see the logs in {launcher.log_dir}",
                                    delay_s=launcher.config.restart_backoff_s)


def _unready_summary(launcher: Launcher) -> str:
    """Each replica still starting and the last line of its log: where a stalled start stopped."""
    unready = [replica for replica in launcher.replicas() if replica.state != "ready"]
    if not unready:
        return "none still starting"
    return "still starting: " + "; ".join(f"{replica.name} (log ends: {last_log_line(replica.log_path)!r})"
                                          for replica in unready)


def wait_for_targets(source: PrometheusSourceConfig, timeout_s: float, poll_s: float = 0.25) -> None:
    """Wait until every pool's and the gateway's selector matches a Prometheus target (new targets appear up
    to ~5 s after a discovery change), so a live backend's start-up check passes.

    Raises:
        SelectorMatchesNothingError: still unmatched after ``timeout_s``.
    """
    checker = PrometheusSource(source)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            checker.check_targets(time.time())
            return
        except SelectorMatchesNothingError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(poll_s)
