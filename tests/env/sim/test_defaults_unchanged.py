"""The simulator's defaults reproduce the numbers recorded on main before the KV-link, reservation and
stale-routing options existed (issue 22): every new behaviour is opt-in, so committed evaluations stand."""

from __future__ import annotations

import pytest

from disaggpilot.env.metrics import GW_E2E, GW_FINISHED, GW_GOODPUT_GENERATION_TOKENS, GW_MET, GW_TPOT, GW_TTFT
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.sim.cluster import SimBackend

from .conftest import small_scenario

# Recorded on main at 6689ba4 by fingerprint() below (seed 7, four 30 s intervals).
RECORDED = {
    "disaggregated": [720.0, 718.0, 106340.0, 154.38275935768172, 24.69607251989433, 3784.204761078888,
                      188.0, 188.0, 11434.0, 82.64528977998134, 6.433744299208883, 463.68511080529095,
                      1.6, 908.0, 43.0],
    "aggregated": [488.0, 488.0, 70868.0, 63.93437013453007, 19.327634879022696, 2823.653622107156,
                   119.0, 119.0, 6599.0, 41.163039196644284, 4.388482248126705, 281.9490179861824,
                   1.2, 607.0, 15.0],
}


def fingerprint(scenario: ScenarioConfig, seed: int = 7) -> list[float]:
    """Per tenant: finished, met, goodput output tokens and the TTFT/TPOT/E2E sums; then cost and totals."""
    backend = SimBackend(scenario)
    backend.reset(seed)
    sums: dict[str, list[float]] = {}
    cost = 0.0
    for _ in range(4):
        snapshot = backend.advance(30.0)
        cost += snapshot.cost_usd
        for name, tenant in snapshot.tenants.items():
            values = [tenant.counters[GW_FINISHED], tenant.counters[GW_MET],
                      tenant.counters[GW_GOODPUT_GENERATION_TOKENS],
                      *(tenant.histograms[h].total for h in (GW_TTFT, GW_TPOT, GW_E2E))]
            sums[name] = [a + b for a, b in zip(sums.get(name, [0.0] * len(values)), values, strict=True)]
    flat = [value for name in sorted(sums) for value in sums[name]]
    return [*flat, cost, float(backend.totals["finished"]), float(len(backend.in_flight))]


SCENARIOS = {
    "disaggregated": lambda: small_scenario(rate_rps=6.0),
    "aggregated": lambda: small_scenario(prefill=0, decode=0, aggregated=3),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_default_settings_give_bit_identical_numbers(name: str) -> None:
    assert fingerprint(SCENARIOS[name]()) == RECORDED[name]
