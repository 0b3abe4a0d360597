"""Fenced writes (issue 21, finding 1): leadership is checked right before every write, and one decision's
worst-case write time must fit under the interval and the leader's renew deadline.

The two-writer test runs two real electors (``controller.leader``) and a real ``KubernetesActuator`` against
kmock served over HTTP; time is a ``VirtualClock``. Before the fence, A's decision (taken while it led) landed
its scale PATCH after B had taken over and written its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from kubernetes import client

from disaggpilot.agent.policy import PolicyContext
from disaggpilot.controller.clock import VirtualClock
from disaggpilot.controller.config import ControllerConfig
from disaggpilot.controller.errors import ConfigError
from disaggpilot.controller.leader import LeaderElector
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.errors import FencedError
from disaggpilot.env.live.kubernetes import KubernetesActuator, KubernetesActuatorConfig
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.structured import build
from tests.controller.conftest import config, make_rig
from tests.controller.test_leader import SETTINGS
from tests.env.live.test_kubernetes import NAMESPACE, ServedEmulator, create_workloads, patches

WORKLOADS: dict[str, Any] = {"namespace": NAMESPACE, "patch_engine_args": False,
             "pools": {"prefill": {"kind": "Deployment", "name": "prefill"},
                       "decode": {"kind": "StatefulSet", "name": "decode"}}}


def elector(api: client.ApiClient, identity: str, clock: VirtualClock) -> LeaderElector:
    return LeaderElector(SETTINGS, NAMESPACE, identity, api, clock, unix_time=lambda: 1.7e9 + clock.now())


class TakeoverWhileDeciding:
    """A policy during whose ``act`` A's lease runs out and B takes over and scales prefill to 5."""

    name = "takeover"

    def __init__(self, clock: VirtualClock, standby: LeaderElector, standby_actuator: KubernetesActuator) -> None:
        self.clock, self.standby, self.standby_actuator = clock, standby, standby_actuator

    def reset(self, context: PolicyContext) -> None:
        """Nothing to prepare."""

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        self.clock.sleep(SETTINGS.lease_duration_s + 1.0)  # A's renewal thread is stuck meanwhile
        assert self.standby.step(), "B should take the expired lease"
        self.standby_actuator.apply(ClusterAction.replicas(prefill=5, decode=2))
        return ClusterAction.replicas(prefill=3, decode=2)


def scale_patches(served: ServedEmulator) -> list[str]:
    return [path for path in patches(served) if path.endswith("/scale")]


def test_a_leader_that_loses_the_lease_between_deciding_and_writing_does_not_write(
        served: ServedEmulator, api: client.ApiClient) -> None:
    create_workloads(api)
    clock = VirtualClock()
    a, b = elector(api, "pod-a", clock), elector(api, "pod-b", clock)
    b_actuator = KubernetesActuator(build(KubernetesActuatorConfig, WORKLOADS), api, fence=b.is_leader)
    a_actuator = KubernetesActuator(build(KubernetesActuatorConfig, WORKLOADS), api, fence=a.is_leader)
    rig = make_rig(TakeoverWhileDeciding(clock, b, b_actuator), config(), actuator=a_actuator)
    rig.loop.clock, rig.loop.leadership = clock, a
    rig.loop.start()
    assert a.step() and not b.step()  # A leads, B stands by
    decision = rig.loop.decide()
    assert decision.mode == "active" and decision.action is not None  # decided as the leader
    assert decision.abandoned and not decision.applied and "FencedError" in str(decision.actuator_error)
    assert scale_patches(served) == ["/deployments/prefill/scale"]  # B's only: nothing from A after it
    scale = client.AppsV1Api(api).read_namespaced_deployment_scale("prefill", NAMESPACE)
    assert scale.spec is not None and scale.spec.replicas == 5
    assert rig.metrics.registry.get_sample_value("disaggpilot_controller_abandoned_decisions_total") == 1
    assert rig.loop.actuator_failures == 0  # a lost lease is not the actuator's failure


def test_the_actuator_checks_the_fence_before_every_api_call(served: ServedEmulator, api: client.ApiClient) -> None:
    create_workloads(api)
    clock = VirtualClock()
    a = elector(api, "pod-a", clock)
    assert a.step()
    calls: list[bool] = []

    def fence() -> bool:  # each API call takes 11 s: the renew deadline (10 s) passes before the patch
        calls.append(a.is_leader())
        clock.sleep(11.0)
        return calls[-1]

    actuator = KubernetesActuator(build(KubernetesActuatorConfig, WORKLOADS), api, fence=fence)
    with pytest.raises(FencedError, match="lost the leader lease"):
        actuator.apply(ClusterAction.replicas(prefill=4, decode=2))
    assert calls == [True, False] and scale_patches(served) == []  # read sent, patch not


# ----- worst-case decision time ---------------------------------------------------------------------------
def kubernetes_config(**overrides: Any) -> ControllerConfig:
    raw: dict[str, Any] = {"actuator": "kubernetes", "interval_s": 30.0,
                           "kubernetes": {**WORKLOADS, "patch_engine_args": True, "request_timeout_s": 1.0},
                           "fallback": {"backoff": {"attempts": 3, "initial_s": 1.0, "multiplier": 2.0}}}
    raw.update(overrides)
    return ControllerConfig.from_dict(raw)


def test_the_worst_case_write_time_is_attempts_times_calls_times_timeout_plus_backoff() -> None:
    # 3 attempts x 1 client try x (2 pools x 4 calls) x 1 s + (1 + 2) s of backoff = 27 s < 30 s
    assert kubernetes_config().worst_case_write_s() == pytest.approx(27.0)
    with pytest.raises(ConfigError, match=r"controller\.kubernetes\.request_timeout_s=2\.0.*51 s.*"
                                          r"controller\.interval_s=30"):
        kubernetes_config(kubernetes={**WORKLOADS, "patch_engine_args": True, "request_timeout_s": 2.0})
    # with leader election the same 27 s does not fit the 10 s renew deadline
    with pytest.raises(ConfigError, match=r"27 s.*controller\.leader_election\.renew_deadline_s=10"):
        kubernetes_config(leader_election={"enabled": True})
    # 2 attempts x 2 client tries x (2 pools x 2 calls) x 0.5 s + 1 s = 9 s < 10 s
    fits = kubernetes_config(leader_election={"enabled": True}, fallback={"backoff": {"attempts": 2}},
                             kubernetes={**WORKLOADS, "client_attempts": 2, "request_timeout_s": 0.5})
    assert fits.worst_case_write_s() == pytest.approx(9.0)
