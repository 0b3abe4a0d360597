"""At the cluster level nothing beats the roofline: a saturated cluster's token counts stay under it.

``tests/env/test_perf.py`` checks one iteration against the roofline; these tests check what the whole
simulator reports per interval, so bookkeeping errors (tokens counted twice, iterations skipped in the
closed-form decode runs, a segment's tokens counted before its time has passed) show up as a broken bound.

The bounds are genuine upper bounds, not estimates:

* prefill: every iteration over ``n`` prompt tokens takes at least ``2 · active params · n / (tp · peak FLOP/s)``,
  so a replica computes at most ``tp · peak / (2 · active)`` prompt tokens per second; the iteration already
  running when the interval opens is counted when it ends, so add one token budget per replica.
* decode: a step yielding ``b`` tokens (``b <= max_num_seqs``: running sequences, plus recomputations finishing)
  takes at least the roofline decode time at batch ``b`` and no context, and ``b / roofline(b)`` grows with
  ``b``, so a replica yields at most ``B / roofline(B)`` tokens per second at the cap ``B = max_num_seqs``,
  plus one step's ``B`` tokens for the step straddling the interval's start. The batch gauge at the end of an
  interval is no bound on the batch during it, so the cap is used.
"""

from __future__ import annotations

import numpy as np
import pytest

from disaggpilot.env.metrics import (
    GENERATION_TOKENS,
    ITL,
    PREEMPTIONS,
    PROMPT_TOKENS,
    RUNNING,
    WAITING,
    MetricsSnapshot,
)
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.sim.cluster import SimBackend
from tests.env.sim.conftest import small_scenario

INTERVAL_S = 30.0
DECODE_CAP = 32  # a small batch cap keeps the decode bound within a factor of about 4 of what is reached


def saturated_scenario(tp: int) -> ScenarioConfig:
    """One prefill and one decode replica under far more load than they can serve."""
    scenario = small_scenario(rate_rps=12.0, prefill=1, decode=1, duration_s=300.0)
    scenario.cluster.prefill.tp = scenario.cluster.decode.tp = tp
    scenario.cluster.decode.max_num_seqs = DECODE_CAP
    return scenario


def run(scenario: ScenarioConfig) -> tuple[SimBackend, list[MetricsSnapshot]]:
    backend = SimBackend(scenario)
    backend.reset(0)
    return backend, [backend.advance(INTERVAL_S) for _ in range(int(scenario.duration_s / INTERVAL_S))]


def prefill_tokens_per_s(backend: SimBackend) -> float:
    """Peak prompt tokens per second of one prefill replica: ``tp · peak FLOP/s / (2 · active params)``."""
    perf, tokens = backend.perf["prefill"], 1e9  # enough tokens that the roofline is compute-bound
    rate = tokens / perf.roofline_prefill_time(tokens)
    assert rate == pytest.approx(perf.tp * backend.gpu.peak_flops / (2.0 * backend.model.active_params))
    return rate


def decode_tokens_per_s(backend: SimBackend, cap: int) -> float:
    """Peak output tokens per second of one decode replica at batch cap ``cap``."""
    perf = backend.perf["decode"]
    rates = [batch / perf.roofline_decode_time(batch, 0.0) for batch in (1, cap // 2, cap)]
    assert rates == sorted(rates)  # b / roofline(b) grows with b: the cap gives the largest rate
    return rates[-1]


@pytest.mark.parametrize("tp", [4, 8])
def test_prefill_pool_never_computes_prompts_faster_than_the_roofline(tp: int) -> None:
    backend, snapshots = run(saturated_scenario(tp))
    rate = prefill_tokens_per_s(backend)
    for snapshot in snapshots:
        pool = snapshot.pools["prefill"]
        replicas = pool.replicas_ready + pool.replicas_draining
        bound = replicas * (snapshot.interval_s * rate + pool.max_num_batched_tokens)
        assert pool.counters[PROMPT_TOKENS] <= bound, (snapshot.end_s, pool.counters[PROMPT_TOKENS], bound)
    late = snapshots[len(snapshots) // 2:]
    assert all(s.pools["prefill"].gauges[WAITING] > 0 for s in late)  # saturated: prompts queue up
    utilisation = [s.pools["prefill"].counters[PROMPT_TOKENS] / (s.interval_s * rate) for s in late]
    assert min(utilisation) > 0.2  # the bound is tested near capacity, not against an idle pool


@pytest.mark.parametrize("tp", [4, 8])
def test_decode_pool_never_generates_tokens_faster_than_the_roofline(tp: int) -> None:
    backend, snapshots = run(saturated_scenario(tp))
    rate = decode_tokens_per_s(backend, DECODE_CAP)
    for snapshot in snapshots:
        pool = snapshot.pools["decode"]
        replicas = pool.replicas_ready + pool.replicas_draining
        bound = replicas * (snapshot.interval_s * rate + pool.max_num_seqs)
        assert pool.max_num_seqs == DECODE_CAP
        assert pool.counters[GENERATION_TOKENS] <= bound, (snapshot.end_s, pool.counters[GENERATION_TOKENS], bound)
    late = snapshots[len(snapshots) // 2:]
    assert all(s.pools["decode"].gauges[RUNNING] == DECODE_CAP for s in late)  # saturated: the batch is full
    utilisation = [s.pools["decode"].counters[GENERATION_TOKENS] / (s.interval_s * rate) for s in late]
    assert min(utilisation) > 0.15


def test_no_inter_token_latency_beats_reading_the_weights_once() -> None:
    """Every decode step reads every weight at least once, so no token comes faster than that."""
    backend, snapshots = run(saturated_scenario(4))
    floor_s = backend.perf["decode"].roofline_decode_time(1, 0.0)
    for snapshot in snapshots:
        itl = snapshot.pools["decode"].histograms[ITL]
        below = np.asarray(itl.edges) < floor_s
        assert itl.counts[:-1][below].sum() == 0, (snapshot.end_s, floor_s, itl.counts)
        assert itl.count > 0 and itl.mean() >= floor_s


def test_pools_never_outrun_their_own_performance_model() -> None:
    """A tighter bound: the fitted iteration times (efficiencies and overheads included), not the roofline.

    Prefill time per token falls as an iteration grows, so a full token budget is the fastest; a pure decode
    step's time is at least its context-free part, and tokens per second grow with the batch up to the cap.
    The roofline bounds above are 3-4x loose; these catch tokens counted twice.
    """
    backend, snapshots = run(saturated_scenario(4))
    prefill, decode = backend.perf["prefill"], backend.perf["decode"]
    for snapshot in snapshots:
        pools = snapshot.pools
        budget, cap = pools["prefill"].max_num_batched_tokens, pools["decode"].max_num_seqs
        prefill_bound = snapshot.interval_s * budget / prefill.prefill_time(budget) + budget
        assert pools["prefill"].counters[PROMPT_TOKENS] <= prefill_bound
        assert pools["decode"].counters[PREEMPTIONS] == 0  # so every decode iteration is a pure decode step
        decode_bound = snapshot.interval_s * cap / decode.decode_base_s(cap) + cap
        assert pools["decode"].counters[GENERATION_TOKENS] <= decode_bound
        if snapshot.end_s > snapshot.interval_s:  # saturated after the first interval: the bounds are near
            assert pools["prefill"].counters[PROMPT_TOKENS] > 0.5 * prefill_bound
            assert pools["decode"].counters[GENERATION_TOKENS] > 0.5 * decode_bound
