"""Hand-built snapshots and contexts for the baseline tests."""

from __future__ import annotations

from collections.abc import Sequence

from disaggpilot.agent.policy import PolicyContext
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.testing import PoolSpecimen, SnapshotSpec, TenantSpecimen, make_snapshot
from tests.env.sim.conftest import small_scenario

INTERVAL_S = 30.0


def context(scenario: ScenarioConfig | None = None, interval_s: float = INTERVAL_S, **fields: object) -> PolicyContext:
    """A context on ``scenario`` (default: the small two-tenant scenario)."""
    return PolicyContext(scenario=scenario or small_scenario(), interval_s=interval_s, **fields)  # type: ignore[arg-type]


def pools(prefill: PoolSpecimen | None = None, decode: PoolSpecimen | None = None) -> dict[str, PoolSpecimen]:
    """Prefill and decode pools (defaults: two idle ready replicas each)."""
    return {"prefill": prefill or PoolSpecimen(), "decode": decode or PoolSpecimen()}


def history(specs: Sequence[SnapshotSpec], interval_s: float = INTERVAL_S) -> list[MetricsSnapshot]:
    """A reset snapshot from ``specs[0]`` at t=0, then one interval per further spec."""
    snapshots = [make_snapshot(specs[0], 0.0, 0.0)]
    for index, spec in enumerate(specs[1:]):
        snapshots.append(make_snapshot(spec, index * interval_s, (index + 1) * interval_s))
    return snapshots


def spec(prefill: PoolSpecimen | None = None, decode: PoolSpecimen | None = None,
         **tenants: TenantSpecimen) -> SnapshotSpec:
    """One interval's spec."""
    return SnapshotSpec(tenants=dict(tenants), pools=pools(prefill, decode))
