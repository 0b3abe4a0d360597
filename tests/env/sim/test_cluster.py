"""The simulator's invariants: conservation, determinism, lifecycle, monotonicity, Little's law."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from disaggpilot.env.backend import ClusterAction, PoolTarget
from disaggpilot.env.errors import BackendError
from disaggpilot.env.metrics import (
    GENERATION_TOKENS,
    GW_ARRIVED,
    GW_FINISHED,
    GW_MET,
    GW_MISSED,
    GW_REJECTED,
    GW_TTFT,
    ITL,
    RUNNING,
    MetricsSnapshot,
)
from disaggpilot.env.sim.cluster import SimBackend
from tests.env.sim.conftest import small_scenario


def run(backend: SimBackend, seed: int, steps: int, interval: float = 30.0) -> list[MetricsSnapshot]:
    backend.reset(seed)
    return [backend.advance(interval) for _ in range(steps)]


def totals(snapshots: list[MetricsSnapshot], key: str) -> float:
    return sum(t.counters[key] for s in snapshots for t in s.tenants.values())


def test_every_request_is_accounted_for_in_every_snapshot(scenario) -> None:
    backend = SimBackend(scenario)
    backend.reset(1)
    arrived = finished = rejected = 0.0
    for _ in range(20):
        snapshot = backend.advance(30.0)
        arrived += sum(t.counters[GW_ARRIVED] for t in snapshot.tenants.values())
        finished += sum(t.counters[GW_FINISHED] for t in snapshot.tenants.values())
        rejected += sum(t.counters[GW_REJECTED] for t in snapshot.tenants.values())
        in_flight = sum(t.in_flight for t in snapshot.tenants.values())
        assert arrived == finished + rejected + in_flight
    assert arrived > 1000 and finished > 0.9 * arrived


def test_scale_down_drains_without_losing_or_restarting_requests() -> None:
    backend = SimBackend(small_scenario(rate_rps=6.0, prefill=4, decode=4))
    backend.reset(2)
    backend.advance(120.0)
    backend.apply(ClusterAction.replicas(prefill=1, decode=1))
    snapshot = backend.advance(1.0)
    assert snapshot.pools["decode"].replicas_draining > 0  # busy replicas drain rather than vanish
    snapshots = [backend.advance(30.0) for _ in range(10)]
    backend.apply(ClusterAction.replicas(prefill=1, decode=1))
    assert all(s.pools["decode"].counters["vllm:num_preemptions_total"] == 0 for s in snapshots)
    assert backend.totals["arrived"] == backend.totals["finished"] + backend.totals["rejected"] + len(backend.in_flight)
    assert snapshots[-1].pools["decode"].replicas_draining == 0
    assert snapshots[-1].pools["decode"].replicas_ready == 1


def test_identical_seeds_give_identical_snapshots(scenario) -> None:
    first = run(SimBackend(scenario), seed=7, steps=10)
    second = run(SimBackend(scenario), seed=7, steps=10)
    other = run(SimBackend(scenario), seed=8, steps=10)
    def fingerprint(snapshots: list[MetricsSnapshot]) -> list[float]:
        return [v for s in snapshots for t in s.tenants.values()
                for v in (*t.counters.values(), *t.histograms[GW_TTFT].counts.tolist())]
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first) != fingerprint(other)


def test_cold_start_bills_before_serving() -> None:
    scenario = small_scenario(cold_start_s=90.0)
    backend = SimBackend(scenario)
    backend.reset(0)
    backend.apply(ClusterAction.replicas(decode=4))
    during = backend.advance(60.0)
    assert during.pools["decode"].replicas_starting == 2 and during.pools["decode"].replicas_ready == 2
    gpus = 4 * (2 + 2 + 2)  # prefill 2, decode 2 ready + 2 starting, tp 4
    assert during.gpu_seconds == pytest.approx(60.0 * gpus)
    assert during.cost_usd == pytest.approx(during.gpu_seconds * during.usd_per_gpu_hour / 3600)
    after = backend.advance(60.0)
    assert after.pools["decode"].replicas_ready == 4


def test_more_replicas_never_worse_on_average_at_fixed_load() -> None:
    def mean_ttft(decode: int, prefill: int) -> float:
        ttfts = []
        for seed in range(3):
            snapshots = run(SimBackend(small_scenario(rate_rps=7.0, prefill=prefill, decode=decode)), seed, 12)
            ttfts += [s.tenants["chat"].histograms[GW_TTFT].mean() for s in snapshots[2:]]
        return float(np.nanmean(ttfts))
    assert mean_ttft(decode=2, prefill=1) >= mean_ttft(decode=2, prefill=2) >= mean_ttft(decode=3, prefill=3)


def test_little_law_holds_on_a_steady_scenario() -> None:
    backend = SimBackend(small_scenario(rate_rps=3.0, prefill=2, decode=2, duration_s=1800))
    snapshots = run(backend, seed=3, steps=60, interval=30.0)[10:]
    arrivals = sum(t.counters[GW_ARRIVED] for s in snapshots for t in s.tenants.values())
    rate = arrivals / (snapshots[-1].end_s - snapshots[0].start_s)
    e2e_mean = sum(t.histograms["disaggpilot_gateway_e2e_request_latency_seconds"].total
                   for s in snapshots for t in s.tenants.values()) / totals(snapshots, GW_FINISHED)
    in_system = np.mean([sum(t.in_flight for t in s.tenants.values()) for s in snapshots])
    assert in_system == pytest.approx(rate * e2e_mean, rel=0.15)


def test_decode_tokens_and_latencies_are_consistent(scenario) -> None:
    snapshots = run(SimBackend(scenario), seed=4, steps=20)
    decode_tokens = sum(s.pools["decode"].counters[GENERATION_TOKENS] for s in snapshots)
    itl_count = sum(s.pools["decode"].histograms[ITL].count for s in snapshots)
    finished = totals(snapshots, GW_FINISHED)
    assert itl_count == pytest.approx(decode_tokens - finished, rel=0.05)  # one token per request is its first
    judged = totals(snapshots, GW_MET) + totals(snapshots, GW_MISSED)
    assert judged >= finished


def test_overload_is_judged_at_once_not_when_requests_finish() -> None:
    backend = SimBackend(small_scenario(rate_rps=40.0, prefill=1, decode=1))
    snapshots = run(backend, seed=5, steps=6)
    last = snapshots[-1].tenants["chat"]
    assert last.attainment() < 0.5
    assert last.counters[GW_MISSED] > last.counters[GW_FINISHED]


def test_aggregated_pool_serves_alone() -> None:
    backend = SimBackend(small_scenario(prefill=0, decode=0, aggregated=3))
    snapshots = run(backend, seed=6, steps=10)
    assert totals(snapshots, GW_FINISHED) > 500
    assert max(s.pools["aggregated"].gauges[RUNNING] for s in snapshots) > 0
    assert all(math.isfinite(s.tenants["chat"].attainment()) for s in snapshots[1:])


def test_kv_pressure_preempts_and_still_finishes_everything() -> None:
    scenario = small_scenario(rate_rps=12.0, prefill=4, decode=1, gpu_memory_utilization=0.5)
    scenario.cluster.decode.max_num_seqs = 1024
    backend = SimBackend(scenario)
    snapshots = run(backend, seed=9, steps=10)
    assert sum(s.pools["decode"].counters["vllm:num_preemptions_total"] for s in snapshots) > 0
    backend.apply(ClusterAction({"decode": PoolTarget(replicas=6)}))
    for _ in range(40):
        backend.advance(30.0)
    assert backend.totals["arrived"] == backend.totals["finished"] + backend.totals["rejected"] + len(backend.in_flight)


def test_misuse_is_reported() -> None:
    backend = SimBackend(small_scenario())
    with pytest.raises(BackendError, match="reset"):
        backend.advance(30.0)
    backend.reset(0)
    with pytest.raises(BackendError, match="aggregated"):
        backend.apply(ClusterAction.replicas(aggregated=2))
    with pytest.raises(BackendError, match="positive"):
        backend.advance(0.0)


def test_tp_comm_perf_model_is_selectable_and_serves_the_scenario() -> None:
    base = small_scenario(duration_s=300.0)
    steps = {}
    for kind in ("roofline", "tp-comm"):
        backend = SimBackend(dataclasses.replace(base, perf_model=kind))
        assert type(backend.perf["prefill"]).__name__ == ("TpPerfModel" if kind == "tp-comm" else "PerfModel")
        backend.reset(3)
        for _ in range(10):
            backend.advance(30.0)
        assert backend.totals["arrived"] == backend.totals["finished"] + backend.totals["rejected"] + len(
            backend.in_flight)
        assert backend.totals["finished"] > 0.9 * backend.totals["arrived"]
        steps[kind] = backend.perf["decode"].decode_step_time(64, 64 * 1000)
    assert steps["tp-comm"] != steps["roofline"]  # the setting reaches the replicas' step times
