"""Small scenarios for simulator tests: seconds of wall time each."""

from __future__ import annotations

import pytest

from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.sim.config import ClusterConfig, PoolConfig
from disaggpilot.env.workload import ArrivalSpec, LengthSpec, TenantSpec


def small_scenario(rate_rps: float = 4.0, prefill: int = 2, decode: int = 2, duration_s: float = 600.0,
                   aggregated: int = 0, **cluster: object) -> ScenarioConfig:
    """Two tenants (chat and summarise) on Llama-3.1-70B TP 4 / H100."""
    tenants = [
        TenantSpec(name="chat", ttft_slo_s=1.0, tpot_slo_s=0.1,
                   arrival=ArrivalSpec(rate_rps=rate_rps),
                   lengths=LengthSpec(prompt_mean=800, prompt_cv=0.8, output_mean=150, output_cv=0.8)),
        TenantSpec(name="summarise", ttft_slo_s=3.0, tpot_slo_s=0.15,
                   arrival=ArrivalSpec(rate_rps=rate_rps / 4),
                   lengths=LengthSpec(prompt_mean=3000, prompt_cv=0.5, output_mean=60, output_cv=0.5)),
    ]
    pools: dict[str, object] = {
        "prefill": PoolConfig(enabled=prefill > 0, replicas=prefill, min_replicas=min(prefill, 1)),
        "decode": PoolConfig(enabled=decode > 0, replicas=decode, min_replicas=min(decode, 1)),
        "aggregated": PoolConfig(enabled=aggregated > 0, replicas=aggregated, min_replicas=0),
    }
    return ScenarioConfig(name="small", duration_s=duration_s, tenants=tenants,
                          cluster=ClusterConfig(**pools, **cluster))  # type: ignore[arg-type]


@pytest.fixture
def scenario() -> ScenarioConfig:
    """The default small scenario."""
    return small_scenario()
