"""Leader election through a Lease, against kmock served over HTTP (see tests/env/live/test_kubernetes.py).

kmock stores ``coordination.k8s.io/v1`` Leases like any other object (create, read, patch; 409 on a second
create); ``VersionedEmulator`` adds the API server's ``resourceVersion`` precondition that makes one of two
racing candidates lose. Time is a ``VirtualClock``: no test sleeps, except the one that runs the renewal thread.
"""

from __future__ import annotations

import time
from typing import Any

import kmock
import pytest
from kubernetes import client

from disaggpilot.controller.clock import VirtualClock
from disaggpilot.controller.config import ControllerConfig, LeaderElectionConfig
from disaggpilot.controller.errors import ConfigError
from disaggpilot.controller.leader import LeaderElector
from tests.env.live.test_kubernetes import ServedEmulator

NAMESPACE, LEASE = "llm", "disaggpilot-controller"
SETTINGS = LeaderElectionConfig(enabled=True, lease_duration_s=15.0, renew_deadline_s=10.0, retry_period_s=2.0)


def elector(api: client.ApiClient, identity: str, clock: VirtualClock,
            changes: list[bool] | None = None) -> LeaderElector:
    return LeaderElector(SETTINGS, NAMESPACE, identity, api, clock, unix_time=lambda: 1.7e9 + clock.now(),
                         on_change=changes.append if changes is not None else None)


def lease(api: client.ApiClient) -> Any:
    return client.CoordinationV1Api(api).read_namespaced_lease(LEASE, NAMESPACE).spec


def rounds(clock: VirtualClock, *candidates: LeaderElector, count: int) -> list[tuple[bool, ...]]:
    """``count`` retry periods: each candidate steps once per period; returns who led after each."""
    seen = []
    for _ in range(count):
        seen.append(tuple(candidate.step() for candidate in candidates))
        clock.sleep(SETTINGS.retry_period_s)
    return seen


def test_the_first_candidate_creates_the_lease_and_the_second_stands_by(api: client.ApiClient) -> None:
    clock = VirtualClock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    assert rounds(clock, a, b, count=30) == [(True, False)] * 30  # a minute of renewals: b never leads
    spec = lease(api)
    assert (spec.holder_identity, spec.lease_duration_seconds, spec.lease_transitions) == ("a", 15, 0)
    assert spec.renew_time.timestamp() == pytest.approx(1.7e9 + 58.0)


def test_a_crashed_leader_is_replaced_after_the_lease_duration_and_stops_acting_first(
        api: client.ApiClient) -> None:
    clock = VirtualClock()
    a_changes: list[bool] = []
    a, b = elector(api, "a", clock, a_changes), elector(api, "b", clock)
    rounds(clock, a, b, count=2)
    crashed_at = clock.now() - SETTINGS.retry_period_s  # a's last renewal
    taken_over_at = None
    for _ in range(12):  # a no longer steps: its renewal thread is dead
        if b.step() and taken_over_at is None:
            taken_over_at = clock.now()
        assert not (a.is_leader() and b.is_leader())
        clock.sleep(SETTINGS.retry_period_s)
    assert taken_over_at is not None and taken_over_at - crashed_at >= SETTINGS.lease_duration_s
    assert not a.is_leader()  # its renew deadline passed long before
    assert (lease(api).holder_identity, lease(api).lease_transitions) == ("b", 1)
    assert a.step() is False and a_changes == [True, False]


def test_a_leader_that_cannot_renew_gives_up_at_the_renew_deadline(served: ServedEmulator,
                                                                   api: client.ApiClient) -> None:
    clock = VirtualClock()
    a = elector(api, "a", clock)
    assert a.step()
    served.emulator["patch", kmock.resource("coordination.k8s.io/v1/leases")] << 503 << {"kind": "Status",
                                                                                         "code": 503}
    led = rounds(clock, a, count=6)
    assert led[:4] == [(True,)] * 4 and led[5:] == [(False,)]  # renewed at t=0; deadline 10 s
    assert not a.is_leader()


def test_of_two_candidates_racing_for_one_record_only_one_wins(api: client.ApiClient,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    old = elector(api, "old", clock)
    old.step()
    clock.sleep(60.0)  # the old holder is long gone
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    a.step(), b.step()  # both see the old record: the lease duration counts from now
    clock.sleep(SETTINGS.lease_duration_s)
    read = b.api.read_namespaced_lease

    def read_then_let_a_win(*args: Any, **kwargs: Any) -> Any:
        seen = read(*args, **kwargs)  # b holds the expired record's resourceVersion...
        assert a.step()  # ...while a takes the lease
        return seen

    b.api.read_namespaced_lease = read_then_let_a_win  # type: ignore[method-assign]
    assert b.step() is False  # b's write carried a stale resourceVersion: 409
    assert "Conflict" in caplog.text
    assert lease(api).holder_identity == "a" and a.is_leader()


def test_a_released_lease_is_taken_over_at_once(api: client.ApiClient) -> None:
    clock = VirtualClock()
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    rounds(clock, a, b, count=2)
    a.release()
    assert not a.is_leader() and lease(api).holder_identity is None
    assert b.step() and lease(api).holder_identity == "b"


def test_the_renewal_thread_acquires_and_releases_on_stop(api: client.ApiClient) -> None:
    from disaggpilot.controller.clock import WallClock

    fast = LeaderElectionConfig(enabled=True, lease_duration_s=3.0, renew_deadline_s=2.0, retry_period_s=0.05,
                                request_timeout_s=1.0)
    running = LeaderElector(fast, NAMESPACE, "pod-0", api, WallClock()).start()
    deadline = time.monotonic() + 10.0
    while not running.is_leader() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert running.is_leader()
    running.stop()
    assert not running.is_leader() and lease(api).holder_identity is None


@pytest.mark.parametrize(("raw", "match"), [
    ({"renew_deadline_s": 20.0}, "lease_duration_s=15.0 is invalid: use more than renew_deadline_s=20.0"),
    ({"retry_period_s": 10.0}, "renew_deadline_s=10.0 is invalid: use more than retry_period_s=10.0"),
    ({"request_timeout_s": 10.0}, r"request_timeout_s=10.0 is invalid"),
])
def test_inconsistent_timings_are_refused(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        LeaderElectionConfig(**raw)


def test_leader_election_needs_a_namespace_and_kubernetes_needs_its_workloads() -> None:
    with pytest.raises(ConfigError, match=r"controller\.leader_election\.namespace=None"):
        ControllerConfig(leader_election=LeaderElectionConfig(enabled=True))
    with pytest.raises(ConfigError, match=r"controller\.kubernetes=None is invalid: describe the workloads"):
        ControllerConfig(actuator="kubernetes")
    kube = {"namespace": "llm", "pools": {"prefill": {"name": "p"}, "decode": {"name": "d"}}}
    configured = ControllerConfig.from_dict({"actuator": "kubernetes", "kubernetes": kube,  # 8 calls x 1 s: fits
                                             "leader_election": {"enabled": True},
                                             "fallback": {"backoff": {"attempts": 1}}})
    assert configured.lease_namespace == "llm"
