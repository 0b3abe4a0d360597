"""What the SLA planner reads from the snapshots of one adjustment interval.

Dynamo's planner queries, every adjustment interval: the number of requests, their mean prompt (ISL) and
output (OSL) lengths, and the mean TTFT and ITL. Here they come from the contract snapshots: request
counts and token counters from the gateway's per-tenant series (summed over tenants), latencies from the
vLLM pool histograms (``vllm:time_to_first_token_seconds`` of the prefill pool,
``vllm:inter_token_latency_seconds`` of the decode pool), falling back to the gateway's TTFT and TPOT
histograms when a backend reports no pool histograms. Means are histogram ``_sum / _count``, exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from disaggpilot.env.metrics import (
    GW_ARRIVED,
    GW_FINISHED,
    GW_GENERATION_TOKENS,
    GW_PROMPT_TOKENS,
    GW_TPOT,
    GW_TTFT,
    ITL,
    RUNNING,
    TTFT,
    MetricsSnapshot,
)


@dataclass(frozen=True)
class Load:
    """Traffic of one adjustment interval.

    Attributes:
        requests: requests arriving in the interval (requests).
        prompt_tokens: mean prompt length (tokens per request; NaN when unknown).
        output_tokens: mean output length (tokens per request; NaN when unknown).
    """

    requests: float
    prompt_tokens: float
    output_tokens: float


def _tenant_sum(snapshots: Sequence[MetricsSnapshot], counter: str) -> float:
    return sum(t.counters.get(counter, 0.0) for s in snapshots for t in s.tenants.values())


def observed_load(snapshots: Sequence[MetricsSnapshot]) -> Load:
    """Arrivals, and mean prompt and output lengths of the requests finished, over ``snapshots``."""
    finished = _tenant_sum(snapshots, GW_FINISHED)
    def mean(counter: str) -> float:
        return _tenant_sum(snapshots, counter) / finished if finished > 0 else math.nan
    return Load(_tenant_sum(snapshots, GW_ARRIVED), mean(GW_PROMPT_TOKENS), mean(GW_GENERATION_TOKENS))


def _histogram_mean(snapshots: Sequence[MetricsSnapshot], role: str, pool_name: str, tenant_name: str) -> float:
    """Mean of a pool histogram over ``snapshots``; of the gateway's tenant histogram when the pool's is empty."""
    pools = [s.pools[role].histograms[pool_name] for s in snapshots
             if role in s.pools and pool_name in s.pools[role].histograms]
    count, total = sum(h.count for h in pools), sum(h.total for h in pools)
    if count <= 0:
        tenants = [t.histograms[tenant_name] for s in snapshots for t in s.tenants.values()
                   if tenant_name in t.histograms]
        count, total = sum(h.count for h in tenants), sum(h.total for h in tenants)
    return total / count if count > 0 else math.nan


def observed_ttft_s(snapshots: Sequence[MetricsSnapshot]) -> float:
    """Mean TTFT over ``snapshots`` (seconds; NaN with no finished request)."""
    return _histogram_mean(snapshots, "prefill", TTFT, GW_TTFT)


def observed_itl_s(snapshots: Sequence[MetricsSnapshot]) -> float:
    """Mean inter-token latency over ``snapshots`` (seconds; NaN with no token streamed)."""
    return _histogram_mean(snapshots, "decode", ITL, GW_TPOT)


def observed_concurrency(snapshots: Sequence[MetricsSnapshot]) -> float:
    """Mean running sequences per ready decode replica over ``snapshots`` (sequences; NaN without data)."""
    values = [s.pools["decode"].gauges.get(RUNNING, 0.0) / s.pools["decode"].replicas_ready
              for s in snapshots if "decode" in s.pools and s.pools["decode"].replicas_ready > 0]
    return sum(values) / len(values) if values else math.nan
