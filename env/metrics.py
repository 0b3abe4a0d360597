"""The metrics contract (docs/metrics.md): what every backend reports once per control interval.

A :class:`MetricsSnapshot` holds, per pool and per tenant, counter increments over the interval, gauges at
its end and histogram bucket counts, under the names a real cluster exposes (vLLM's own metric names for
the pools; ``disaggpilot_gateway_*`` for the per-tenant series of the gateway in front of them). The
simulator, the live backend and the test backend all build this one type, so observation and reward code
never learn which backend ran.

It also judges one request against its tenant's objectives (:func:`tpot_s`, :func:`judge`,
:func:`waited_past_ttft`), the one judgement the simulator, the gateway, the load generator and the emulator
share, and holds the default objectives (:data:`DEFAULT_TTFT_SLO_S`, :data:`DEFAULT_TPOT_SLO_S`).

Bucket edges are vLLM's (copied from the real ``/metrics`` scrapes in ``data/vllm/``, vLLM 0.32),
and quantiles follow Prometheus' ``histogram_quantile``, so a policy sees the same quantisation in
simulation as in production.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

# --- vLLM metric names (v1 engine) -------------------------------------------------------------------
TTFT = "vllm:time_to_first_token_seconds"
ITL = "vllm:inter_token_latency_seconds"
TPOT = "vllm:request_time_per_output_token_seconds"
E2E = "vllm:e2e_request_latency_seconds"
QUEUE_TIME = "vllm:request_queue_time_seconds"
RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_USAGE = "vllm:kv_cache_usage_perc"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
PREEMPTIONS = "vllm:num_preemptions_total"
REQUEST_SUCCESS = "vllm:request_success_total"
# Prefix-cache counters of vLLM v1, in tokens: prompt tokens looked up, and those found cached
# (data/vllm/metrics_aggregated_under_load.txt: "Prefix cache queries, in terms of number of queried tokens").
PREFIX_CACHE_QUERIES = "vllm:prefix_cache_queries_total"
PREFIX_CACHE_HITS = "vllm:prefix_cache_hits_total"
# Names used by older vLLM releases; readers accept both (docs/metrics.md). The old per-token
# ``time_per_output_token_seconds`` histogram is what vLLM now calls ``inter_token_latency_seconds``.
LEGACY_NAMES: Mapping[str, str] = {
    "vllm:time_per_output_token_seconds": ITL,
    "vllm:gpu_cache_usage_perc": KV_USAGE,
}

# --- per-tenant gateway series (labelled ``tenant``) -------------------------------------------------
GW_TTFT = "disaggpilot_gateway_time_to_first_token_seconds"
GW_TPOT = "disaggpilot_gateway_time_per_output_token_seconds"
GW_E2E = "disaggpilot_gateway_e2e_request_latency_seconds"
GW_ARRIVED = "disaggpilot_gateway_requests_arrived_total"
GW_FINISHED = "disaggpilot_gateway_requests_finished_total"
GW_MET = "disaggpilot_gateway_requests_slo_met_total"
GW_MISSED = "disaggpilot_gateway_requests_slo_missed_total"
GW_REJECTED = "disaggpilot_gateway_requests_rejected_total"
GW_PROMPT_TOKENS = "disaggpilot_gateway_prompt_tokens_total"
GW_GENERATION_TOKENS = "disaggpilot_gateway_generation_tokens_total"
GW_GOODPUT_PROMPT_TOKENS = "disaggpilot_gateway_goodput_prompt_tokens_total"
GW_GOODPUT_GENERATION_TOKENS = "disaggpilot_gateway_goodput_generation_tokens_total"
GW_IN_FLIGHT = "disaggpilot_gateway_requests_in_flight"

TENANT_COUNTERS: tuple[str, ...] = (
    GW_ARRIVED, GW_FINISHED, GW_MET, GW_MISSED, GW_REJECTED, GW_PROMPT_TOKENS, GW_GENERATION_TOKENS,
    GW_GOODPUT_PROMPT_TOKENS, GW_GOODPUT_GENERATION_TOKENS,
)
POOL_COUNTERS: tuple[str, ...] = (PROMPT_TOKENS, GENERATION_TOKENS, PREEMPTIONS, REQUEST_SUCCESS)
JUDGED_COUNTERS: tuple[str, ...] = (GW_ARRIVED, GW_MET, GW_MISSED)
"""The gateway counters every interval a backend's ``period_so_far`` (``env.backend.PeriodHistory``) replays
must hold for a tenant: arrivals (the rate trend and peak) and judgements (the miss budget)."""
HISTORY_COUNTERS: tuple[str, ...] = (*JUDGED_COUNTERS, GW_FINISHED, GW_PROMPT_TOKENS, GW_GENERATION_TOKENS)
"""What ``period_so_far`` replays: the judged counters, and the finished requests' tokens a sizer's demand
window measures lengths with (NaN where the store has none)."""
PREFIX_CACHE_COUNTERS: tuple[str, ...] = (PREFIX_CACHE_QUERIES, PREFIX_CACHE_HITS)
"""Reported by the simulator and by vLLM v1; older engines lack them, so readers treat them as optional."""

# --- vLLM 0.32 bucket edges (upper bounds; +Inf implied), from data/vllm/metrics_*.txt ----------
TTFT_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0, 160.0, 640.0, 2560.0,
)
ITL_BUCKETS: tuple[float, ...] = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)
TPOT_BUCKETS: tuple[float, ...] = ITL_BUCKETS
REQUEST_LATENCY_BUCKETS: tuple[float, ...] = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0, 480.0,
    960.0, 1920.0, 7680.0,
)
BUCKETS: Mapping[str, tuple[float, ...]] = {
    TTFT: TTFT_BUCKETS, ITL: ITL_BUCKETS, TPOT: TPOT_BUCKETS, E2E: REQUEST_LATENCY_BUCKETS,
    QUEUE_TIME: REQUEST_LATENCY_BUCKETS, GW_TTFT: TTFT_BUCKETS, GW_TPOT: TPOT_BUCKETS,
    GW_E2E: REQUEST_LATENCY_BUCKETS,
}
POOL_HISTOGRAMS: tuple[str, ...] = (TTFT, ITL, TPOT, E2E, QUEUE_TIME)
TENANT_HISTOGRAMS: tuple[str, ...] = (GW_TTFT, GW_TPOT, GW_E2E)


# --- judging one request (docs/metrics.md, "Latency" and "Meeting the SLO") --------------------------------
DEFAULT_TTFT_SLO_S = 2.0
"""TTFT objective of a tenant whose settings name none (seconds)."""
DEFAULT_TPOT_SLO_S = 0.1
"""TPOT objective of a tenant whose settings name none (seconds per token)."""


class Objectives(Protocol):
    """A tenant's two objectives, as every tenant settings class spells them (``env.workload.TenantSpec``,
    ``localcluster.gateway.config.TenantConfig``)."""

    @property
    def ttft_slo_s(self) -> float:
        """Time-to-first-token objective (seconds)."""

    @property
    def tpot_slo_s(self) -> float:
        """Time-per-output-token objective (seconds per token)."""


class Judgement(NamedTuple):
    """How one request counts: met or missed, and the goodput tokens it earns.

    Attributes:
        met: the request finished within both objectives.
        goodput_prompt_tokens: prompt tokens it earns (tokens; 0 when missed).
        goodput_output_tokens: output tokens it earns (tokens; 0 when missed).
    """

    met: bool
    goodput_prompt_tokens: int
    goodput_output_tokens: int

    @property
    def goodput_tokens(self) -> int:
        """Prompt plus output tokens earned, unweighted (tokens)."""
        return self.goodput_prompt_tokens + self.goodput_output_tokens


MISSED = Judgement(False, 0, 0)
"""A request refused, lost, or waiting past its TTFT objective: missed, whatever it carried earns nothing."""


def tpot_s(first_token_s: float, last_token_s: float, output_tokens: int) -> float:
    """Time per output token of one request: ``(last − first token) / (output tokens − 1)`` (seconds per token).

    With both times measured from arrival this is docs/metrics.md's ``(e2e − TTFT) / (output tokens − 1)``;
    any clock works, as long as both times are on it. A request of one output token (or none) has no token
    after its first: its TPOT is 0.0, so it is judged on TTFT alone. Callers keep it out of per-tenant TPOT
    histograms (vLLM's per-replica histogram observes the 0.0, and so does the emulator).

    Args:
        first_token_s: when the first output token arrived (seconds).
        last_token_s: when the last output token arrived (seconds).
        output_tokens: output tokens of the request (tokens).
    """
    return (last_token_s - first_token_s) / (output_tokens - 1) if output_tokens > 1 else 0.0


def judge(ttft_s: float, tpot: float, prompt_tokens: int, output_tokens: int, objectives: Objectives) -> Judgement:
    """Judge a finished request: met when its TTFT and its TPOT are both at most their objectives.

    A met request earns its prompt and output tokens; a missed one earns nothing. A NaN latency (no first
    token was seen) compares false, so the request is missed.

    Args:
        ttft_s: time to first token (seconds).
        tpot: time per output token, from :func:`tpot_s` (seconds per token).
        prompt_tokens: prompt tokens of the request (tokens).
        output_tokens: output tokens of the request (tokens).
        objectives: the tenant's objectives.
    """
    if ttft_s <= objectives.ttft_slo_s and tpot <= objectives.tpot_slo_s:
        return Judgement(True, prompt_tokens, output_tokens)
    return MISSED


def waited_past_ttft(waited_s: float, objectives: Objectives) -> bool:
    """Whether a request still without a first token after ``waited_s`` seconds has missed its TTFT objective
    (strictly past it: a first token at exactly the objective still meets it)."""
    return waited_s > objectives.ttft_slo_s


@dataclass
class Histogram:
    """A Prometheus-style histogram over one interval: per-bucket counts (not cumulative) and a sum.

    Attributes:
        edges: finite bucket upper bounds, increasing (the unit of the observed value).
        counts: observations per bucket, ``len(edges) + 1`` entries, the last one for ``+Inf``.
        total: sum of the observed values (the ``_sum`` series).
    """

    edges: tuple[float, ...]
    counts: np.ndarray
    total: float = 0.0

    @classmethod
    def empty(cls, edges: Sequence[float]) -> Histogram:
        """A histogram with no observations over ``edges``."""
        return cls(tuple(edges), np.zeros(len(edges) + 1, dtype=np.float64), 0.0)

    @property
    def count(self) -> float:
        """Number of observations (the ``_count`` series)."""
        return float(self.counts.sum())

    def observe(self, value: float, weight: float = 1.0) -> None:
        """Add ``weight`` observations of ``value`` (Prometheus buckets are ``le``: inclusive)."""
        self.counts[bisect_left(self.edges, value)] += weight
        self.total += value * weight

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s observations; both must share bucket edges."""
        if other.edges != self.edges:
            raise ValueError("cannot merge histograms with different bucket edges")
        self.counts += other.counts
        self.total += other.total

    def mean(self) -> float:
        """Mean observed value, NaN when empty."""
        count = self.count
        return self.total / count if count > 0 else math.nan

    def quantile(self, q: float) -> float:
        """The ``q``-quantile as Prometheus' ``histogram_quantile`` computes it; NaN when empty.

        Linear interpolation inside the bucket holding the rank; the first bucket starts at 0; a rank in
        the ``+Inf`` bucket returns the largest finite edge.
        """
        count = self.count
        if count <= 0 or not 0.0 <= q <= 1.0:
            return math.nan
        cumulative = np.cumsum(self.counts)
        rank = q * count
        index = int(np.searchsorted(cumulative, rank, side="left"))
        if index >= len(self.edges):
            return self.edges[-1]
        lower = self.edges[index - 1] if index > 0 else 0.0
        below = cumulative[index - 1] if index > 0 else 0.0
        in_bucket = self.counts[index]
        if in_bucket <= 0:
            return self.edges[index]
        return lower + (self.edges[index] - lower) * (rank - below) / in_bucket

    def copy(self) -> Histogram:
        """An independent copy."""
        return Histogram(self.edges, self.counts.copy(), self.total)

    def rescaled(self, factor: float) -> Histogram:
        """The same observations multiplied by ``factor`` (e.g. wall seconds to cluster seconds), on the same
        edges. Counts are moved as ``quantile`` reads them, linearly inside each bucket, so the result's
        cumulative count at every edge is what this histogram says of ``edge / factor``; between edges its
        quantiles are within a bucket of ``factor`` times these. What lies beyond the largest finite edge stays
        in ``+Inf``. Exact when ``factor`` is 1."""
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"rescaled(factor={factor!r}): use a finite factor > 0")
        edges = np.array(self.edges, dtype=np.float64)
        cumulative = np.cumsum(self.counts[:-1])
        # Cumulative count at each new edge e: the old cumulative at e / factor, interpolated from 0 at 0 and
        # held flat past the last finite edge (the +Inf bucket does not say where its mass lies).
        moved = np.interp(edges / factor, np.concatenate(([0.0], edges)), np.concatenate(([0.0], cumulative)))
        counts = np.diff(np.concatenate((moved, [self.count])), prepend=0.0)
        return Histogram(self.edges, np.maximum(counts, 0.0), self.total * factor)


def empty_histograms(names: Sequence[str]) -> dict[str, Histogram]:
    """One empty histogram per metric name, with that metric's vLLM bucket edges."""
    return {name: Histogram.empty(BUCKETS[name]) for name in names}


@dataclass
class PoolMetrics:
    """One pool (prefill, decode or aggregated) over one interval, summed over its replicas.

    Attributes:
        role: ``prefill``, ``decode`` or ``aggregated``.
        replicas_ready: replicas serving at the end of the interval.
        replicas_starting: replicas billed but still in cold start.
        replicas_draining: replicas finishing their own requests before removal.
        gauges: vLLM gauges at the end of the interval, summed over ready replicas
            (``vllm:kv_cache_usage_perc`` is the mean over ready replicas, a fraction 0..1).
        counters: vLLM counter increments over the interval, summed over replicas.
        histograms: vLLM histograms over the interval, merged over replicas.
        max_num_batched_tokens: the pool's prefill token budget in force (tokens per iteration).
        max_num_seqs: the pool's batch cap in force (sequences per replica).
        gpus_per_replica: tensor-parallel degree (GPUs).
    """

    role: str
    replicas_ready: int = 0
    replicas_starting: int = 0
    replicas_draining: int = 0
    gauges: dict[str, float] = field(default_factory=lambda: {RUNNING: 0.0, WAITING: 0.0, KV_USAGE: 0.0})
    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(POOL_COUNTERS, 0.0))
    histograms: dict[str, Histogram] = field(default_factory=lambda: empty_histograms(POOL_HISTOGRAMS))
    max_num_batched_tokens: int = 0
    max_num_seqs: int = 0
    gpus_per_replica: int = 1

    @property
    def replicas_billed(self) -> int:
        """Replicas that cost money now: starting, ready and draining."""
        return self.replicas_ready + self.replicas_starting + self.replicas_draining


@dataclass
class TenantMetrics:
    """One tenant's requests over one interval, as the gateway sees them.

    Attributes:
        counters: increments of the ``disaggpilot_gateway_*_total`` counters over the interval.
        histograms: TTFT, TPOT and end-to-end latency of requests finished in the interval (seconds).
        in_flight: requests arrived and not finished at the end of the interval.
    """

    counters: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TENANT_COUNTERS, 0.0))
    histograms: dict[str, Histogram] = field(default_factory=lambda: empty_histograms(TENANT_HISTOGRAMS))
    in_flight: int = 0

    def attainment(self) -> float:
        """Met / judged in the interval; NaN when no request was judged.

        Every request is judged once: *met* when it finishes within both objectives; *missed* when it
        finishes outside them, is rejected, or is still waiting for its first token past its TTFT
        objective at the end of an interval (counted then, so an overloaded cluster shows at once).
        """
        met = self.counters[GW_MET]
        judged = met + self.counters[GW_MISSED]
        return met / judged if judged > 0 else math.nan

    def goodput_tokens(self) -> float:
        """Prompt plus output tokens of requests that met their SLO in the interval (unweighted)."""
        return self.counters[GW_GOODPUT_PROMPT_TOKENS] + self.counters[GW_GOODPUT_GENERATION_TOKENS]


@dataclass
class MetricsSnapshot:
    """Everything a backend reports about one control interval ``[start_s, end_s)``.

    Attributes:
        start_s: interval start (seconds since the episode began).
        end_s: interval end (seconds since the episode began).
        pools: per pool role.
        tenants: per tenant name.
        cost_usd: money billed in the interval for starting, ready and draining replicas (USD).
        gpu_seconds: GPU time billed in the interval (GPU-seconds).
        usd_per_gpu_hour: price in force (USD per GPU-hour).
        source: which backend produced it (``sim``, ``live``, ``test``); informative only.
    """

    start_s: float
    end_s: float
    pools: dict[str, PoolMetrics]
    tenants: dict[str, TenantMetrics]
    cost_usd: float = 0.0
    gpu_seconds: float = 0.0
    usd_per_gpu_hour: float = 0.0
    source: str = "unknown"

    @property
    def interval_s(self) -> float:
        """Length of the interval (seconds)."""
        return self.end_s - self.start_s

    def goodput_tokens(self, weights: Mapping[str, float] | None = None) -> float:
        """Goodput tokens in the interval, each tenant's weighted by ``weights`` (default 1)."""
        return sum((weights or {}).get(name, 1.0) * t.goodput_tokens() for name, t in self.tenants.items())

    def gpus_billed(self) -> int:
        """GPUs billed at the end of the interval, over every pool."""
        return sum(p.replicas_billed * p.gpus_per_replica for p in self.pools.values())
