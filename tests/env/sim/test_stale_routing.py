"""Routing on scraped, stale load figures (issue 22, item 5)."""

from __future__ import annotations

import numpy as np
import pytest

from disaggpilot.env.sim.cluster import SimBackend
from disaggpilot.env.workload import RequestBatch

from .conftest import small_scenario


def replicas_used_by_a_burst(staleness_s: float, at: float = 1.2, counts_sent: bool = False) -> int:
    """Eight 2,000-token prompts within 7 ms: how many of the four prefill replicas got one."""
    scenario = small_scenario(prefill=4, decode=2, routing_staleness_s=staleness_s, routing_counts_sent=counts_sent)
    arrivals = at + np.arange(8) * 0.001
    requests = RequestBatch(arrival_s=arrivals, tenant=np.zeros(8), prompt_tokens=np.full(8, 2000),
                            output_tokens=np.full(8, 10), tenant_names=("chat",))
    backend = SimBackend(scenario, requests=requests)
    backend.reset(0)
    backend.advance(at + 0.01)  # every prompt has arrived; none has finished its prefill
    return sum(1 for r in backend.pools["prefill"].ready if r.queued_tokens)


def test_perfect_routing_spreads_a_burst() -> None:
    assert replicas_used_by_a_burst(0.0) == 4


@pytest.mark.parametrize("staleness_s", [0.5, 5.0])
def test_stale_routing_sends_a_burst_to_one_replica(staleness_s: float) -> None:
    assert replicas_used_by_a_burst(staleness_s) == 1


def test_a_scrape_after_the_burst_began_is_seen() -> None:
    # Scrapes at 0, 0.5, 1.0, ...: a burst straddling the 1.0 s scrape splits over two replicas.
    assert replicas_used_by_a_burst(0.5, at=0.996) == 2


def test_a_router_counting_what_it_sent_spreads_a_burst_despite_staleness() -> None:
    assert replicas_used_by_a_burst(5.0, counts_sent=True) == 4
