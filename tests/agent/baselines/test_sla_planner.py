"""``sla_planner``: Dynamo's replica formulas, correction factors, adjustment cadence and limits."""

from __future__ import annotations

import pytest

from disaggpilot.agent.baselines import SlaPlannerPolicy
from disaggpilot.agent.baselines.sla_planner import correction_factor, fit_gpu_budget, limit_change, plan_replicas
from disaggpilot.agent.sizing.profile import PerfProfile
from disaggpilot.agent.sizing.signals import Load
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.testing import PoolSpecimen, SnapshotSpec, TenantSpecimen
from tests.agent.baselines.fakes import RoundProfile
from tests.agent.baselines.helpers import context, history, spec
from tests.env.sim.conftest import small_scenario


def test_replica_formulas_on_a_known_profile() -> None:
    profile = RoundProfile()
    load = Load(requests=1800, prompt_tokens=2100, output_tokens=300)  # 20 rps over 90 s
    # prefill: 20 · 2100 = 42,000 tok/s; × min(1, p); / 2,500 / 4 → 4.2 → 5
    # decode: 20 · 300 = 6,000 tok/s / thpt(ITL 0.1 / d) / 4; thpt(0.1) = 200 → 7.5 → 8
    assert plan_replicas(load, 90.0, profile, itl_target_s=0.1) == (5, 8)
    assert plan_replicas(load, 90.0, profile, 0.1, p_correction=0.5) == (3, 8)   # 2.1 → 3
    assert plan_replicas(load, 90.0, profile, 0.1, p_correction=2.0) == (5, 8)   # min(1, p) caps at 1
    assert plan_replicas(load, 90.0, profile, 0.1, d_correction=2.0) == (5, 15)  # thpt(0.05) = 100 → 15
    assert profile.decode_queries[-1] == (0.05, 2100 + 300 / 2)
    assert plan_replicas(Load(0, 2100, 300), 90.0, profile, 0.1) == (1, 1)       # at least one each


def test_budget_step_limit_and_corrections() -> None:
    cluster = small_scenario(gpu_budget=64).cluster
    assert fit_gpu_budget(20, 20, cluster) == (8, 8)   # 160 GPUs → × 0.4: 8 prefill, (64 − 32) / 4 decode
    assert fit_gpu_budget(3, 4, cluster) == (3, 4)
    assert (limit_change(15, 2, 8), limit_change(0, 12, 8), limit_change(5, 4, 8)) == (10, 4, 5)
    assert correction_factor(0.3, 0.2) == pytest.approx(1.5)
    assert correction_factor(float("nan"), 0.2) == 1.0 and correction_factor(0.3, 0.0) == 1.0


def busy_interval(requests: int = 600) -> SnapshotSpec:
    """30 s of 20 rps (prompt 2100, output 300), TTFT 0.105 s (half the profile's), TPOT 0.05 s (2× its ITL)."""
    chat = TenantSpecimen(arrived=requests, met=requests, prompt_tokens=2100, output_tokens=300, ttft_s=0.105,
                          tpot_s=0.05)
    return spec(PoolSpecimen(ready=2), PoolSpecimen(ready=2, running=40), chat=chat)


def test_planner_adjusts_every_adjustment_interval_from_the_observed_window() -> None:
    policy = SlaPlannerPolicy(profile=RoundProfile(), adjustment_interval_s=90.0)
    policy.reset(context())  # targets: strictest tenant, TTFT 1.0 s, ITL 0.1 s
    snapshots = history([spec(), busy_interval(), busy_interval(), busy_interval(), busy_interval()])
    replicas = []
    for steps in range(5):
        action = policy.act(None, snapshots[:steps + 1])  # type: ignore[arg-type]
        replicas.append((action.pools["prefill"].replicas, action.pools["decode"].replicas))
    # p = 0.105 / 0.21 = 0.5 → prefill 3; d = 0.05 / 0.025 = 2 → decode 15, limited to 2 + 8 = 10.
    assert replicas == [(2, 2), (2, 2), (2, 2), (3, 10), (3, 10)]
    assert policy.corrections == pytest.approx((0.5, 2.0))


def test_planner_forecasts_with_its_predictor() -> None:
    policy = SlaPlannerPolicy(profile=RoundProfile(), adjustment_interval_s=30.0, predictor="moving_average",
                              moving_average_window=2, correction=False)
    policy.reset(context())
    snapshots = history([spec(), busy_interval(600), busy_interval(300)])
    policy.act(None, snapshots[:2])  # type: ignore[arg-type]
    action = policy.act(None, snapshots)  # type: ignore[arg-type]
    # 450 requests in 30 s: 15 rps · 2100 / 10,000 → 3.15 → 4; 15 · 300 / 200 / 4 → 5.6 → 6
    assert (action.pools["prefill"].replicas, action.pools["decode"].replicas) == (4, 6)


def test_quiet_intervals_keep_neutral_corrections_and_shrink_to_one() -> None:
    policy = SlaPlannerPolicy(profile=RoundProfile(), adjustment_interval_s=30.0)
    policy.reset(context())
    snapshots = history([spec(), busy_interval(), spec(chat=TenantSpecimen())])
    policy.act(None, snapshots[:2])  # type: ignore[arg-type]
    action = policy.act(None, snapshots)  # type: ignore[arg-type]
    assert (action.pools["prefill"].replicas, action.pools["decode"].replicas) == (1, 1)


def test_perf_profile_is_consistent_with_the_performance_model() -> None:
    profile = PerfProfile(small_scenario())
    ttft = profile.prefill_ttft_s(3000)
    assert profile.prefill_throughput_per_gpu(3000) * profile.prefill_gpus * ttft == pytest.approx(3000)
    assert profile.decode_itl_s(8, 1000) == pytest.approx(profile.decode.decode_step_time(8, 8000))
    within = [b / profile.decode_itl_s(b, 1000) / 4 for b in range(1, 257) if profile.decode_itl_s(b, 1000) <= 0.05]
    assert profile.best_decode_throughput_per_gpu(0.05, 1000) == pytest.approx(max(within))  # brute force
    assert profile.best_decode_throughput_per_gpu(0.001, 1000) == pytest.approx(
        1 / profile.decode_itl_s(1, 1000) / 4)  # nothing meets 1 ms: concurrency 1


def test_planner_refuses_a_cluster_without_prefill_and_decode_pools() -> None:
    with pytest.raises(ConfigError, match="no prefill/decode pools"):
        SlaPlannerPolicy().reset(context(small_scenario(prefill=0, decode=0, aggregated=2)))
