"""KV transfers (issue 22, item 4): decode KV reserved before the transfer, shared links, unequal TP."""

from __future__ import annotations

import numpy as np
import pytest

from disaggpilot.env.errors import ConfigError
from disaggpilot.env.perf import PerfModel
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.sim.cluster import SimBackend
from disaggpilot.env.sim.config import ClusterConfig, PoolConfig
from disaggpilot.env.sim.request import Request
from disaggpilot.env.sim.transfer import KvTransfers, Transfer
from disaggpilot.env.workload import RequestBatch

from .conftest import small_scenario


def batch(arrivals: list[float], prompts: list[int], outputs: list[int]) -> RequestBatch:
    """Fixed requests of the small scenario's first tenant."""
    return RequestBatch(arrival_s=np.array(arrivals), tenant=np.zeros(len(arrivals)),
                        prompt_tokens=np.array(prompts), output_tokens=np.array(outputs),
                        tenant_names=("chat",))


# ----- decode KV reserved before the transfer ---------------------------------------------------------------
def full_decode_backend(reserve: bool) -> SimBackend:
    """One decode replica of ~57k KV tokens: A (40k prompt, 3k output) holds it while B (17.5k) is ready."""
    scenario = small_scenario(prefill=2, decode=1, gpu_memory_utilization=0.55, kv_reserve_before_transfer=reserve)
    backend = SimBackend(scenario, requests=batch([0.0, 8.0], [40_000, 17_500], [3_000, 10]))
    backend.reset(0)
    return backend


def full_decode_run(reserve: bool) -> list[dict[str, float]]:
    """Once a second for 200 s: whether A is done, B held or queued, the prefill side's KV, requests done."""
    backend = full_decode_backend(reserve)
    decode = backend.pools["decode"].ready[0]
    assert decode.kv_admit_limit < 40_000 + 17_500, "B must not fit beside A"
    timeline = []
    for _ in range(200):
        backend.advance(1.0)
        b_prefill = max(r.kv_used for r in backend.pools["prefill"].ready)
        timeline.append({"now": backend.now, "a_done": float(0 not in backend.in_flight),
                         "held": float(len(decode.awaiting_transfer)), "b_queued": float(len(decode.decode_queue)),
                         "prefill_kv": float(b_prefill), "done": float(backend.totals["finished"])})
    return timeline


def test_a_full_decode_replica_holds_the_transfer_until_memory_frees() -> None:
    timeline = full_decode_run(reserve=True)
    held = [t for t in timeline if t["held"]]
    assert held, "B's transfer never waited for decode memory"
    assert all(not t["a_done"] and t["prefill_kv"] == 17_500 for t in held), \
        "held only while A runs, and the prefill replica keeps B's KV cache meanwhile"
    assert all(not t["b_queued"] for t in timeline), "B never lands before its blocks are reserved"
    first_free = next(t for t in timeline if t["a_done"])
    assert not first_free["held"], "the transfer starts in the step A finishes"
    assert timeline[-1]["done"] == 2


def test_without_reservation_the_transfer_lands_and_waits_in_the_decode_queue() -> None:
    timeline = full_decode_run(reserve=False)
    assert not any(t["held"] for t in timeline)
    waiting = [t for t in timeline if t["b_queued"]]
    assert waiting and all(t["prefill_kv"] == 0 for t in waiting), "prefill freed B's KV when it shipped"
    assert timeline[-1]["done"] == 2


# ----- shared links ---------------------------------------------------------------------------------------
def record_landings(link: str, tp: tuple[int, int] = (4, 4)) -> tuple[SimBackend, KvTransfers, dict[int, float]]:
    """A backend's event loop driving a ``KvTransfers`` whose landings are recorded by request id."""
    scenario = small_scenario(kv_link=link)
    scenario.cluster.prefill.tp, scenario.cluster.decode.tp = tp
    backend = SimBackend(scenario, requests=batch([1e6], [10], [10]))
    backend.reset(0)
    landed: dict[int, float] = {}

    def on_landed(transfer: Transfer) -> None:
        landed[transfer[0].rid] = backend.now

    transfers = KvTransfers(scenario.cluster, backend, 327_680.0, 36.0, on_landed)
    return backend, transfers, landed


def send(backend: SimBackend, transfers: KvTransfers, rid: int, at: float, pair: tuple[int, int] = (0, 0)) -> None:
    prefill, decode = backend.pools["prefill"].ready[pair[0]], backend.pools["decode"].ready[pair[1]]
    backend.schedule(at, lambda _: transfers.send(Request(rid, 0, at, 20_000, 10, 0), prefill, decode, at), None)


LATENCY, ALONE = 0.002, 20_000 * 327_680.0 / (4 * 36e9)  # seconds: fixed cost; 20k tokens over 4 lanes


def test_two_transfers_over_one_link_take_twice_as_long_as_one() -> None:
    backend, transfers, landed = record_landings("shared_pair")
    send(backend, transfers, 0, 0.0)
    send(backend, transfers, 1, 10.0)
    send(backend, transfers, 2, 10.0)
    backend.advance(20.0)
    assert landed[0] == pytest.approx(LATENCY + ALONE, rel=1e-9)
    assert landed[1] == landed[2] == pytest.approx(10.0 + LATENCY + 2 * ALONE, rel=1e-9)


def test_a_transfer_joining_halfway_shares_the_rest() -> None:
    backend, transfers, landed = record_landings("shared_pair")
    send(backend, transfers, 0, 0.0)
    send(backend, transfers, 1, ALONE / 2)
    backend.advance(5.0)
    # A has half left when B joins: both at half rate, A done after ALONE more; B's last half then alone.
    assert landed[0] == pytest.approx(1.5 * ALONE + LATENCY, rel=1e-9)
    assert landed[1] == pytest.approx(2.0 * ALONE + LATENCY, rel=1e-9)


@pytest.mark.parametrize(("link", "pairs"), [("private", ((0, 0), (0, 0))), ("shared_pair", ((0, 0), (1, 1)))])
def test_private_links_and_other_pairs_do_not_contend(link: str, pairs: tuple[tuple[int, int], ...]) -> None:
    backend, transfers, landed = record_landings(link)
    for rid, pair in enumerate(pairs):
        send(backend, transfers, rid, 0.0, pair)
    backend.advance(5.0)
    assert landed[0] == landed[1] == pytest.approx(LATENCY + ALONE, rel=1e-9)


# ----- prefill and decode pools with different TP ----------------------------------------------------------
@pytest.mark.parametrize("tp", [(4, 8), (8, 4)])
def test_unequal_tp_ships_over_the_smaller_sides_lanes(tp: tuple[int, int]) -> None:
    backend, transfers, landed = record_landings("private", tp)
    send(backend, transfers, 0, 0.0)
    backend.advance(5.0)
    assert landed[0] == pytest.approx(LATENCY + ALONE, rel=1e-9)  # 4 lanes, not 8


def test_prefill_tp2_and_decode_tp4_serve_with_each_pools_own_memory_and_bill() -> None:
    tenants = small_scenario().tenants
    cluster = ClusterConfig(prefill=PoolConfig(replicas=2, tp=2), decode=PoolConfig(replicas=2, tp=4), gpu_budget=32)
    scenario = ScenarioConfig(name="tp2-tp4", model="llama-3.1-8b", duration_s=120.0, tenants=tenants,
                              cluster=cluster)
    backend = SimBackend(scenario)
    backend.reset(3)
    for role, tp in (("prefill", 2), ("decode", 4)):
        expected = PerfModel(backend.model, backend.gpu, tp, gpu_memory_utilization=0.9).kv_capacity_tokens
        assert all(r.kv_capacity == expected for r in backend.pools[role].ready)
    gpu_seconds = sum(backend.advance(30.0).gpu_seconds for _ in range(4))
    assert gpu_seconds == pytest.approx((2 * 2 + 2 * 4) * 120.0)
    totals = backend.totals
    assert totals["finished"] > 100
    assert totals["arrived"] == totals["finished"] + totals["rejected"] + len(backend.in_flight)


# ----- settings ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "value"), [("kv_link", "ring"), ("routing_staleness_s", -1.0)])
def test_bad_transfer_and_routing_settings_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"cluster.{key}"):
        ClusterConfig(**{key: value})  # type: ignore[arg-type]


def test_a_held_transfer_counts_as_waiting_on_the_decode_replica() -> None:
    backend = full_decode_backend(reserve=True)
    backend.advance(20.0)
    decode = backend.pools["decode"].ready[0]
    assert len(decode.awaiting_transfer) == 1 and decode.waiting() == 1
    assert decode.load() == decode.kv_used + 17_500, "the router counts the held prompt against this replica"
