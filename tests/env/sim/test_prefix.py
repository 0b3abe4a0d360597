"""Prefix caching in the simulator: hit rates, LRU eviction, cheaper prefills, prefix-aware routing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from disaggpilot.env.catalog import load_gpu, load_model
from disaggpilot.env.errors import ConfigError, TraceError
from disaggpilot.env.metrics import (
    GW_E2E,
    GW_TTFT,
    PREFIX_CACHE_HITS,
    PREFIX_CACHE_QUERIES,
    PROMPT_TOKENS,
    MetricsSnapshot,
)
from disaggpilot.env.scenario import ScenarioConfig, load_scenario
from disaggpilot.env.sim.cluster import SimBackend
from disaggpilot.env.sim.config import ClusterConfig, PoolConfig
from disaggpilot.env.sim.prefix import BLOCK_TOKENS, PrefixCache, PrefixSource
from disaggpilot.env.simulate import run_simulation
from disaggpilot.env.summary import summarize
from disaggpilot.env.trace import load_trace
from disaggpilot.env.workload import TenantSpec, TraceSpec, generate_requests


def trace_scenario(path: Path, replicas: int = 1, hash_block_tokens: int = 16, **cluster: object) -> ScenarioConfig:
    """One tenant replaying ``path`` on ``replicas`` prefill and one decode replica."""
    tenant = TenantSpec(name="t", ttft_slo_s=5.0, trace=TraceSpec(path=str(path), hash_block_tokens=hash_block_tokens))
    pools = ClusterConfig(prefill=PoolConfig(replicas=replicas), decode=PoolConfig(replicas=1), **cluster)  # type: ignore[arg-type]
    return ScenarioConfig(name="prefix", duration_s=100.0, tenants=[tenant], cluster=pools)


def write_trace(path: Path, rows: Sequence[tuple[float, int, str]]) -> Path:
    """A native trace of (time, prompt tokens, hash ids) rows, 8 output tokens each."""
    lines = ["timestamp_s,tenant,input_tokens,output_tokens,hash_ids"]
    lines += [f'{time},t,{prompt},8,"{ids}"' for time, prompt, ids in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(scenario: ScenarioConfig, seconds: float = 100.0) -> list[MetricsSnapshot]:
    backend = SimBackend(scenario)
    backend.reset(0)
    return [backend.advance(10.0) for _ in range(round(seconds / 10.0))]


def pool_total(snapshots: list[MetricsSnapshot], counter: str) -> float:
    return sum(pool.counters[counter] for snapshot in snapshots for pool in snapshot.pools.values())


def hit_rate(snapshots: list[MetricsSnapshot]) -> float:
    return pool_total(snapshots, PREFIX_CACHE_HITS) / pool_total(snapshots, PREFIX_CACHE_QUERIES)


def test_hit_rate_on_a_trace_with_known_shared_prefixes(tmp_path: Path) -> None:
    # 80-token prompts: 5 blocks, and vLLM never serves the last token from cache, so at most 4 blocks hit.
    rows = [(0.0, 80, "0 1 2 3 4"),     # cold: 0
            (10.0, 80, "0 1 2 3 5"),    # shares 4 blocks: 64
            (20.0, 80, "0 1 9 10 11"),  # shares 2 blocks: 32
            (30.0, 80, "[0, 1, 2, 3, 4]"),  # all 5 cached, capped at 64
            (40.0, 80, "12 13 14 15 16")]   # nothing shared: 0
    snapshots = run(trace_scenario(write_trace(tmp_path / "t.csv", rows)))
    assert pool_total(snapshots, PREFIX_CACHE_QUERIES) == 5 * 80
    assert pool_total(snapshots, PREFIX_CACHE_HITS) == 64 + 32 + 64
    assert pool_total(snapshots, PROMPT_TOKENS) == 5 * 80  # cached tokens still count as prompt tokens


def test_ids_of_larger_blocks_cover_that_many_tokens(tmp_path: Path) -> None:
    # Mooncake's ids cover 512 tokens: a second 1,100-token prompt sharing its two full ids hits 1,024.
    rows = [(0.0, 1100, "7 8 9"), (10.0, 1100, "7 8 10")]
    snapshots = run(trace_scenario(write_trace(tmp_path / "m.csv", rows), hash_block_tokens=512))
    assert pool_total(snapshots, PREFIX_CACHE_HITS) == 1024


def test_a_trace_without_hash_ids_models_no_prefixes(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text("timestamp_s,tenant,input_tokens,output_tokens\n0.0,t,80,8\n1.0,t,80,8\n")
    assert load_trace(path).hash_ids is None
    snapshots = run(trace_scenario(path))
    # Nothing to share: no cache is modelled, as with vLLM's --no-enable-prefix-caching (no lookups either).
    assert pool_total(snapshots, PREFIX_CACHE_QUERIES) == pool_total(snapshots, PREFIX_CACHE_HITS) == 0
    assert pool_total(snapshots, PROMPT_TOKENS) == 160


def test_hash_ids_follow_the_replayed_rows(tmp_path: Path) -> None:
    rows = [(0.0, 80, "1"), (1.0, 80, "2"), (2.0, 80, "3"), (3.0, 80, "4")]
    path = write_trace(tmp_path / "w.csv", rows)
    tenant = TenantSpec(name="t", trace=TraceSpec(path=str(path), start_s=1.0, rate_multiplier=2.0))
    batch = generate_requests([tenant], duration_s=0.9, seed=0)
    assert batch.hash_ids == [(2,), (3,)]  # rows at 1 s and 2 s arrive at 0 and 0.5 s; 3 s would be 1 s


def test_a_malformed_hash_id_names_the_line(tmp_path: Path) -> None:
    path = write_trace(tmp_path / "bad.csv", [(0.0, 80, "1 2"), (1.0, 80, "3 x")])
    with pytest.raises(TraceError, match="line 3, column hash_ids"):
        load_trace(path)


def test_bad_prefix_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="shared_prefix_tokens"):
        TenantSpec(shared_prefix_tokens=-1)
    with pytest.raises(ConfigError, match="hash_block_tokens"):
        TraceSpec(path="x.csv", hash_block_tokens=100)


def chain(name: str, blocks: int) -> tuple[tuple[object, int], ...]:
    return tuple(((name, j), BLOCK_TOKENS) for j in range(blocks))


def test_a_small_cache_evicts_the_least_recently_used_prefix() -> None:
    cache, a, b, c = PrefixCache(), chain("a", 4), chain("b", 4), chain("c", 4)
    room = 8 * BLOCK_TOKENS  # two prefixes
    cache.insert(a, room)
    cache.insert(b, room)
    assert cache.lookup(a, 65, room) == 64  # a is now the most recent
    cache.insert(c, room)  # evicts b, not a
    assert cache.cached_prefix(a, 65) == 64
    assert cache.cached_prefix(b, 65) == 0
    assert cache.tokens == room


def test_hits_drop_when_the_working_set_outgrows_the_cache() -> None:
    prefixes = [chain(name, 4) for name in "abc"]

    def hits(room: int) -> int:
        cache, total = PrefixCache(), 0
        for _ in range(5):
            for prefix in prefixes:  # round robin over three prefixes: LRU's worst case
                total += cache.lookup(prefix, 65, room)
                cache.insert(prefix, room)
        return total

    assert hits(12 * BLOCK_TOKENS) == 4 * 3 * 64  # all fit: every round after the first hits
    assert hits(8 * BLOCK_TOKENS) == 0  # two of three fit: each is evicted just before it is needed


def utilization_for(tokens: float) -> float:
    """The ``gpu_memory_utilization`` that leaves a TP 4 Llama-3.1-70B replica on H100 a KV cache of ``tokens``."""
    model, gpu = load_model("llama-3.1-70b"), load_gpu("h100-sxm")
    need = tokens * model.kv_bytes_per_token("bf16") + model.weight_bytes("bf16") + 4e9 * 4
    return need / (gpu.memory_bytes * 4)


def test_memory_pressure_on_the_replica_evicts_the_older_prefix(tmp_path: Path) -> None:
    # Two 4k-token prefixes; the replica's KV cache (10k tokens) holds one beside a running request, not two.
    long = 4096
    utilization = utilization_for(2.5 * long)
    scenario = trace_scenario(tmp_path / "x.csv", hash_block_tokens=long, gpu_memory_utilization=utilization)
    assert 2.4 * long < SimBackend(scenario).perf["prefill"].kv_capacity_tokens < 2.6 * long

    def hits(ids: Sequence[str]) -> float:
        write_trace(tmp_path / "x.csv", [(10.0 * i, long + 16, key) for i, key in enumerate(ids)])
        return pool_total(run(scenario, 10.0 * len(ids)), PREFIX_CACHE_HITS)

    assert hits(["1", "1"]) == long
    assert hits(["1", "2", "1"]) == 0  # caching 2 evicted 1, the least recently used
    assert hits(["1", "2", "2", "1"]) == long  # 2 hits; then 1 misses


def test_a_cached_prefix_makes_the_prefill_cheaper(tmp_path: Path) -> None:
    def ttft_of_second(ids: str) -> float:
        rows = [(0.0, 8000, "1"), (10.0, 8000, ids)]
        snapshots = run(trace_scenario(write_trace(tmp_path / f"{ids}.csv", rows), hash_block_tokens=7984), 20.0)
        return sum(s.tenants["t"].histograms[GW_TTFT].total for s in snapshots[1:])

    cached, uncached = ttft_of_second("1"), ttft_of_second("2")
    assert cached < 0.5 * uncached  # 7,984 of 8,000 tokens skipped; the 16 computed still attend to them


def test_shared_prefix_tokens_yield_the_expected_hit_rate() -> None:
    tenant = TenantSpec(name="sys", shared_prefix_tokens=1024,
                        lengths={"kind": "fixed", "prompt_mean": 2048, "output_mean": 4},  # type: ignore[arg-type]
                        arrival={"process": "gamma", "rate_rps": 1.0, "cv": 0.01})  # type: ignore[arg-type]
    scenario = ScenarioConfig(name="sys", duration_s=200.0, tenants=[tenant],
                              cluster=ClusterConfig(prefill=PoolConfig(replicas=1), decode=PoolConfig(replicas=1)))
    snapshots = run(scenario, 200.0)
    requests = pool_total(snapshots, PREFIX_CACHE_QUERIES) / 2048
    assert requests > 150
    # Nearly regular arrivals a second apart: every request but the first finds the prefix computed.
    assert pool_total(snapshots, PREFIX_CACHE_HITS) == (requests - 1) * 1024


def test_a_request_draws_one_of_its_tenants_prefixes() -> None:
    source = PrefixSource([64], [3], [BLOCK_TOKENS], None)
    heads = {source.chain(index, 0, 100)[0][0] for index in range(300)}
    assert len(heads) == 3
    assert source.chain(7, 0, 100)[-1] == ((7, "own"), 32)  # 100 tokens: 4 shared blocks, 2 of its own


def test_prefix_aware_routing_hits_more_than_least_tokens() -> None:
    rates = {}
    for routing in ("least_tokens", "prefix_aware"):
        scenario = load_scenario("shared_prefix")
        scenario.cluster.routing = routing
        backend = SimBackend(scenario)
        backend.reset(0)
        rates[routing] = hit_rate([backend.advance(30.0) for _ in range(20)])
    assert rates["prefix_aware"] > rates["least_tokens"] + 0.15, rates


def test_without_shared_prefixes_the_simulation_is_unchanged() -> None:
    # Recorded on main at 6689ba4, before prefix caching: no shared prefix, no hash ids and least_tokens routing
    # must build no cache and simulate bit for bit as before (the committed evaluation numbers rest on it).
    scenario = load_scenario("steady")
    snapshots, _ = run_simulation(scenario, 3, 900.0, 30.0)
    summary = summarize(snapshots, scenario.tenants)
    assert (summary.goodput_tokens, summary.cost_usd) == (8941437.0, 18.0)
    assert summary.min_attainment == 0.8528497409326425
    assert [(row.requests, row.finished) for row in summary.tenants] == [(1930, 1930), (4635, 4594)]
    ttft = sum(tenant.histograms[GW_TTFT].total for snapshot in snapshots for tenant in snapshot.tenants.values())
    e2e = sum(tenant.histograms[GW_E2E].total for snapshot in snapshots for tenant in snapshot.tenants.values())
    assert (ttft, e2e) == (4041.64590302284, 37357.45637767149)
    assert pool_total(snapshots, PREFIX_CACHE_HITS) == 0
