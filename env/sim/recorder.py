"""Per-interval accumulators the simulator writes into, turned into a ``MetricsSnapshot`` at each boundary."""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np

from disaggpilot.env.metrics import (
    BUCKETS,
    E2E,
    GENERATION_TOKENS,
    GW_ARRIVED,
    GW_E2E,
    GW_FINISHED,
    GW_GENERATION_TOKENS,
    GW_GOODPUT_GENERATION_TOKENS,
    GW_GOODPUT_PROMPT_TOKENS,
    GW_MET,
    GW_MISSED,
    GW_PROMPT_TOKENS,
    GW_REJECTED,
    GW_TPOT,
    GW_TTFT,
    ITL,
    PREEMPTIONS,
    PREFIX_CACHE_HITS,
    PREFIX_CACHE_QUERIES,
    PROMPT_TOKENS,
    QUEUE_TIME,
    REQUEST_SUCCESS,
    TPOT,
    TTFT,
    Histogram,
    PoolMetrics,
    TenantMetrics,
)


class Accumulator:
    """A histogram being filled: plain Python lists, several times faster per observation than numpy
    element updates; turned into a contract ``Histogram`` once per interval."""

    __slots__ = ("counts", "edges", "total")

    def __init__(self, edges: tuple[float, ...]) -> None:
        self.edges = edges
        self.counts = [0.0] * (len(edges) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        """Add one observation."""
        self.counts[bisect_left(self.edges, value)] += 1.0
        self.total += value

    def to_histogram(self) -> Histogram:
        """The contract's type."""
        return Histogram(self.edges, np.asarray(self.counts, dtype=np.float64), self.total)


def observe_arithmetic(histogram: Accumulator, first: float, step: float, count: int, weight: float) -> None:
    """Observe ``count`` values ``first, first + step, ...`` (``step >= 0``), each ``weight`` times.

    A run of decode iterations of a fixed batch has step times in arithmetic progression; this buckets
    the whole run in O(buckets spanned) rather than O(iterations).
    """
    if count <= 0 or weight <= 0:
        return
    edges, counts = histogram.edges, histogram.counts
    last = first + step * (count - 1)
    histogram.total += weight * (count * first + step * count * (count - 1) / 2.0)
    bucket = bisect_left(edges, first)
    if bucket == len(edges) or last <= edges[bucket] or step <= 0.0:
        counts[bucket] += weight * count
        return
    done = 0
    while done < count:
        if bucket == len(edges):
            counts[bucket] += weight * (count - done)
            return
        # values first + step*j <= edge  <=>  j <= (edge - first) / step
        upto = math.floor((edges[bucket] - first) / step + 1e-9) + 1
        if upto > count:  # min(count, upto), without the builtin's argument handling (hot path)
            upto = count
        if upto > done:
            counts[bucket] += weight * (upto - done)
            done = upto
        bucket += 1


class PoolStats:
    """vLLM counters and histograms of one pool, accumulated over the current interval."""

    __slots__ = ("e2e", "generation_tokens", "itl", "preemptions", "prefix_hits", "prefix_queries", "prompt_tokens",
                 "queue", "success", "tpot", "ttft")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new interval."""
        self.ttft, self.itl, self.tpot = (Accumulator(BUCKETS[name]) for name in (TTFT, ITL, TPOT))
        self.e2e, self.queue = Accumulator(BUCKETS[E2E]), Accumulator(BUCKETS[QUEUE_TIME])
        self.prompt_tokens = self.generation_tokens = self.preemptions = self.success = 0.0
        self.prefix_queries = self.prefix_hits = 0.0  # prompt tokens looked up in, and found in, prefix caches

    def fill(self, pool: PoolMetrics) -> None:
        """Copy this interval's figures into ``pool``."""
        pool.histograms = {TTFT: self.ttft.to_histogram(), ITL: self.itl.to_histogram(),
                           TPOT: self.tpot.to_histogram(), E2E: self.e2e.to_histogram(),
                           QUEUE_TIME: self.queue.to_histogram()}
        pool.counters = {PROMPT_TOKENS: self.prompt_tokens, GENERATION_TOKENS: self.generation_tokens,
                         PREEMPTIONS: self.preemptions, REQUEST_SUCCESS: self.success,
                         PREFIX_CACHE_QUERIES: self.prefix_queries, PREFIX_CACHE_HITS: self.prefix_hits}


class TenantStats:
    """One tenant's gateway counters and histograms over the current interval."""

    __slots__ = ("arrived", "e2e", "finished", "generation_tokens", "goodput_generation", "goodput_prompt",
                 "met", "missed", "prompt_tokens", "rejected", "tpot", "ttft")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start a new interval."""
        self.ttft, self.tpot = Accumulator(BUCKETS[GW_TTFT]), Accumulator(BUCKETS[GW_TPOT])
        self.e2e = Accumulator(BUCKETS[GW_E2E])
        self.arrived = self.finished = self.met = self.missed = self.rejected = 0.0
        self.prompt_tokens = self.generation_tokens = self.goodput_prompt = self.goodput_generation = 0.0

    def to_metrics(self, in_flight: int) -> TenantMetrics:
        """This interval's figures as the contract's type."""
        counters = {
            GW_ARRIVED: self.arrived, GW_FINISHED: self.finished, GW_MET: self.met, GW_MISSED: self.missed,
            GW_REJECTED: self.rejected, GW_PROMPT_TOKENS: self.prompt_tokens,
            GW_GENERATION_TOKENS: self.generation_tokens, GW_GOODPUT_PROMPT_TOKENS: self.goodput_prompt,
            GW_GOODPUT_GENERATION_TOKENS: self.goodput_generation,
        }
        histograms = {GW_TTFT: self.ttft.to_histogram(), GW_TPOT: self.tpot.to_histogram(),
                      GW_E2E: self.e2e.to_histogram()}
        return TenantMetrics(counters=counters, histograms=histograms, in_flight=in_flight)
