"""The controller's /metrics, /healthz and /readyz, served over real HTTP on loopback."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import pytest

from disaggpilot.controller.telemetry import MetricsServer
from disaggpilot.controller.testing import FixedPolicy
from tests.controller.conftest import INTERVAL_S, Rig, make_rig

NAMES = (
    "disaggpilot_controller_decisions_total", "disaggpilot_controller_applied_actions_total",
    'disaggpilot_controller_desired_replicas{pool="prefill"}',
    'disaggpilot_controller_observed_replicas{pool="decode"}',
    'disaggpilot_controller_fallback_total{reason="stale"}', "disaggpilot_controller_decision_latency_seconds_bucket",
    'disaggpilot_controller_tenant_attainment{tenant="chat"}',
    "disaggpilot_controller_last_successful_scrape_timestamp_seconds", 'disaggpilot_controller_mode{mode="active"}',
)

IDLE_CONNECTIONS = 40
"""Connections opened and left silent, as a slow or hostile client would."""


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture
def served() -> Iterator[tuple[Rig, MetricsServer]]:
    rig = make_rig(FixedPolicy({"prefill": 3, "decode": 2}))
    server = MetricsServer(rig.metrics, rig.clock.now, INTERVAL_S, "127.0.0.1", 0).start()
    yield rig, server
    server.stop()


def test_metrics_are_served_with_every_name(served: tuple[Rig, MetricsServer]) -> None:
    rig, server = served
    assert server.port > 0 and server.url.startswith("http://127.0.0.1:")
    rig.run(2)
    status, body = get(f"{server.url}/metrics")
    assert status == 200
    for name in NAMES:
        assert name in body, name
    assert "disaggpilot_controller_decisions_total 2.0" in body
    assert 'disaggpilot_controller_desired_replicas{pool="prefill"} 3.0' in body
    assert 'disaggpilot_controller_mode{mode="shadow"} 0.0' in body
    assert 'disaggpilot_controller_tenant_attainment{tenant="chat"} 1.0' in body


def test_healthz_answers_and_readyz_follows_successful_decisions(served: tuple[Rig, MetricsServer]) -> None:
    rig, server = served
    assert get(f"{server.url}/healthz") == (200, "ok\n")
    assert get(f"{server.url}/readyz")[0] == 503  # no decision yet
    rig.run(1)
    assert get(f"{server.url}/readyz")[0] == 200
    rig.clock.sleep(3 * INTERVAL_S + 1.0)  # three intervals without a decision
    assert get(f"{server.url}/readyz")[0] == 503
    rig.run(1)
    assert get(f"{server.url}/readyz")[0] == 200
    assert get(f"{server.url}/nothing")[0] == 404


def _settle(condition: Callable[[], bool], within_s: float = 20.0) -> bool:
    """Poll ``condition`` until it holds or ``within_s`` passes (a bound, not a measurement)."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_idle_connections_are_closed_after_the_request_timeout_and_release_their_threads() -> None:
    rig = make_rig(FixedPolicy({"prefill": 3, "decode": 2}))
    server = MetricsServer(rig.metrics, rig.clock.now, INTERVAL_S, "127.0.0.1", 0, request_timeout_s=0.5).start()
    baseline = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(IDLE_CONNECTIONS)]
    try:
        assert _settle(lambda: threading.active_count() > baseline)  # silent clients hold handler threads...
        for connection in idle:  # ...until the server times them out and closes them: end of stream
            connection.settimeout(20.0)
            assert connection.recv(1) == b""
        assert _settle(lambda: threading.active_count() <= baseline), threading.active_count() - baseline
        assert get(f"{server.url}/healthz") == (200, "ok\n")
    finally:
        for connection in idle:
            connection.close()
        server.stop()
