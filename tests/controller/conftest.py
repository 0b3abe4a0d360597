"""Shared pieces of the controller tests: healthy snapshots and a loop rig (the tiny bundles: ``tests/conftest.py``).

Everything runs in virtual time (``VirtualClock``) on scripted snapshots (``env.testing.ScriptedBackend``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from disaggpilot.agent.bundle import load_bundle
from disaggpilot.agent.policy import Policy
from disaggpilot.controller.actuators import Actuator
from disaggpilot.controller.clock import VirtualClock
from disaggpilot.controller.config import ControllerConfig
from disaggpilot.controller.decision import Decision
from disaggpilot.controller.loop import ControllerLoop
from disaggpilot.controller.policies import make_fallback
from disaggpilot.controller.telemetry import ControllerMetrics
from disaggpilot.controller.testing import FlakyActuator, TamperedSource
from disaggpilot.controller.validate import Problem
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.testing import PoolSpecimen, ScriptedBackend, SnapshotSpec, TenantSpecimen
from tests.env.live import test_kubernetes as kubernetes_fixtures
from tests.env.sim.conftest import small_scenario

INTERVAL_S = 30.0


@pytest.fixture
def scenario() -> ScenarioConfig:
    """Two tenants (chat: target 0.99, summarise: 0.99) and two pools of TP 4."""
    return small_scenario()


def healthy_spec(prefill: int = 2, decode: int = 2, met: int = 100, missed: int = 0) -> SnapshotSpec:
    """An interval where both tenants are served and every gauge is in range."""
    tenants = {"chat": TenantSpecimen(arrived=120, met=met, missed=missed),
               "summarise": TenantSpecimen(arrived=30, met=25, missed=0, prompt_tokens=3000)}
    pools = {"prefill": PoolSpecimen(ready=prefill, waiting=2.0, kv_usage=0.3),
             "decode": PoolSpecimen(ready=decode, running=40.0, kv_usage=0.5)}
    return SnapshotSpec(tenants=tenants, pools=pools)


def config(**overrides: Any) -> ControllerConfig:
    """Test settings: active mode, a permissive shield, quick recovery, one try per call; a bundle is pinned to
    its content hash unless ``expected_hash`` is given (active mode refuses an unpinned one)."""
    raw: dict[str, Any] = {
        "mode": "active", "interval_s": INTERVAL_S,
        "shield": {"pools": {"prefill": {"min_replicas": 1, "max_replicas": 8},
                             "decode": {"min_replicas": 1, "max_replicas": 8}},
                   "gpu_budget": 128, "up_cooldown_s": 0.0, "down_cooldown_s": 0.0,
                   "down_hysteresis_intervals": 1, "tenant_floors": False},
        "fallback": {"recovery_intervals": 2, "max_actuator_failures": 2, "backoff": {"attempts": 1}},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    raw.setdefault("fallback_only", raw.get("bundle") is None)  # active mode without a bundle must say so
    if raw.get("bundle") is not None and "expected_hash" not in raw:
        raw["expected_hash"] = load_bundle(raw["bundle"]).content_hash
    return ControllerConfig.from_dict(raw)


@dataclass
class Rig:
    """A loop and everything around it, for assertions."""

    loop: ControllerLoop
    backend: ScriptedBackend
    source: TamperedSource
    actuator: Actuator
    clock: VirtualClock
    metrics: ControllerMetrics
    decisions: list[Decision] = field(default_factory=list)

    def run(self, count: int) -> list[Decision]:
        """Run ``count`` more decisions (virtual time); returns them."""
        new = []
        for _ in range(count):
            self.loop.run(1)
            assert self.loop.last_decision is not None
            new.append(self.loop.last_decision)
        self.decisions += new
        return new


def make_rig(policy: Policy | None, settings: ControllerConfig | None = None,
             tamper: Mapping[int, Callable[[MetricsSnapshot], None]] | None = None,
             errors: Mapping[int, Exception] | None = None, actuator: Actuator | None = None,
             fallback: Policy | None = None, startup_problem: Problem | None = None,
             spec: SnapshotSpec | None = None) -> Rig:
    """A loop over scripted healthy snapshots (replicas follow applied actions) in virtual time."""
    settings = settings or config()
    scenario = small_scenario()
    backend = ScriptedBackend([spec or healthy_spec()])
    source = TamperedSource(backend, tamper, errors)
    actuator = actuator if actuator is not None else FlakyActuator(backend=backend)
    clock = VirtualClock()
    metrics = ControllerMetrics(("prefill", "decode"), ("chat", "summarise"), settings.mode)
    loop = ControllerLoop(settings, scenario, EnvConfig(interval_s=settings.interval_s), source, actuator, clock,
                          policy, fallback if fallback is not None else make_fallback(settings), metrics,
                          startup_problem=startup_problem, seed=0)
    return Rig(loop, backend, source, actuator, clock, metrics)


# ----- the Kubernetes API emulator (kmock over HTTP), for the leader election and actuator tests ------------
# One definition, beside ServedEmulator in tests/env/live/test_kubernetes.py; importing the fixtures here makes
# them available to every test under tests/controller/.
served = kubernetes_fixtures.served
api = kubernetes_fixtures.api
