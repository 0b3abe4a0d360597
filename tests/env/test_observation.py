"""Observation features computed exactly from hand-built snapshots through the environment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig, interface
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.observation import ObservationConfig, feature_names
from disaggpilot.env.randomization import RandomizationConfig
from disaggpilot.env.testing import PoolSpecimen, ScriptedBackend, SnapshotSpec, TenantSpecimen, make_snapshot
from tests.env.sim.conftest import small_scenario


def scripted_env(script, follow: bool = True, **observation) -> tuple[DisaggClusterEnv, ScriptedBackend]:
    backend = ScriptedBackend(script, follow_actions=follow)
    environment = DisaggClusterEnv(small_scenario(duration_s=300.0), backend_factory=lambda _: backend,
                                   config=EnvConfig(observation=ObservationConfig(**observation)))
    return environment, backend


def features(environment: DisaggClusterEnv, observation: np.ndarray) -> dict[str, float]:
    return dict(zip(environment.observer.names, observation.tolist(), strict=True))


def test_tenant_and_pool_features_are_exact() -> None:
    busy = SnapshotSpec(
        tenants={"chat": TenantSpecimen(arrived=60, met=45, missed=5, prompt_tokens=800, output_tokens=200,
                                        ttft_s=0.45, tpot_s=0.05, in_flight=20)},
        pools={"prefill": PoolSpecimen(ready=2, waiting=6.0, running=4.0, kv_usage=0.25),
               "decode": PoolSpecimen(ready=4, starting=1, running=100.0, max_num_seqs=256, kv_usage=0.5)})
    environment, _ = scripted_env([SnapshotSpec(), busy], follow=False)
    environment.reset(seed=0)
    observation, *_ = environment.step(environment.codec.neutral(environment.snapshot))
    f = features(environment, observation)
    assert f["tenant0/present"] == 1.0 and f["tenant1/present"] == 0.0 and f["tenant2/present"] == 0.0
    assert f["tenant0/arrival_rate"] == pytest.approx(2.0 / 10)  # 60 arrivals in 30 s
    assert f["tenant0/arrival_rate_per_replica"] == pytest.approx(1.0)  # 2 ready prefill replicas
    assert f["tenant0/prompt_mean"] == pytest.approx(0.8)
    assert f["tenant0/output_mean"] == pytest.approx(2.0)
    assert f["tenant0/ttft_p90_slo"] == pytest.approx(0.475, abs=0.03)  # bucket 0.25..0.5, interpolated
    assert f["tenant0/attainment"] == pytest.approx(0.9)
    assert f["tenant0/attainment_gap"] == pytest.approx(0.99 - 0.9)
    assert f["tenant0/in_flight_per_replica"] == pytest.approx(20 / 6 / 10)
    assert f["pool/prefill/waiting_per_replica"] == pytest.approx(6 / 2 / 10)
    assert f["pool/decode/running_per_replica"] == pytest.approx(100 / 4 / 256)
    assert f["pool/decode/starting"] == pytest.approx(1 / 32)
    assert f["pool/aggregated/present"] == 0.0
    assert f["cluster/gpu_fraction"] == pytest.approx((2 + 5) * 4 / 128)


def test_unmeasurable_values_keep_their_last_value_and_nothing_is_nan() -> None:
    measured = SnapshotSpec(tenants={"chat": TenantSpecimen(arrived=30, met=10, missed=10)})
    silent = SnapshotSpec(tenants={"chat": TenantSpecimen()})
    environment, _ = scripted_env([SnapshotSpec(), measured, silent])
    environment.reset(seed=0)
    first, *_ = environment.step(environment.codec.neutral(environment.snapshot))
    second, *_ = environment.step(environment.codec.neutral(environment.snapshot))
    assert np.isfinite(second).all()
    assert features(environment, second)["tenant0/attainment"] == features(environment, first)["tenant0/attainment"]
    assert features(environment, second)["tenant0/arrival_rate"] == 0.0


def test_arrival_trend_is_positive_on_a_rising_load() -> None:
    script = [SnapshotSpec(tenants={"chat": TenantSpecimen(arrived=30 * (i + 1))}) for i in range(6)]
    environment, _ = scripted_env(script)
    environment.reset(seed=0)
    trends = [features(environment, environment.step(environment.codec.neutral(environment.snapshot))[0])
              ["tenant0/arrival_trend"] for _ in range(5)]
    assert trends[0] == 0.0 and all(t > 0 for t in trends[1:])


def test_time_features_follow_the_clock_when_enabled() -> None:
    environment, _ = scripted_env([SnapshotSpec()], time_features=True, time_period_s=120.0)
    environment.reset(seed=0)
    observation, *_ = environment.step(environment.codec.neutral(environment.snapshot))
    f = features(environment, observation)
    assert f["cluster/time_of_day_sin"] == pytest.approx(1.0)  # 30 s of a 120 s period
    assert f["cluster/time_of_day_cos"] == pytest.approx(0.0, abs=1e-6)


def test_layout_is_fixed_and_too_many_tenants_is_an_error() -> None:
    names = feature_names(ObservationConfig(max_tenants=2))
    assert names[0] == "tenant0/present" and names[-1] == "cluster/time_of_day_cos"
    with pytest.raises(ConfigError, match="max_tenants"):
        scripted_env([SnapshotSpec()], max_tenants=1)


def test_actions_reach_the_backend_as_targets() -> None:
    environment, backend = scripted_env([SnapshotSpec()])
    environment.reset(seed=0)
    environment.step(np.array([4, 0, 0, 4]))  # prefill +2, decode -2 (to its minimum 1... from 2 -> 0 -> 1)
    action = backend.actions[-1]
    assert action.pools["prefill"].replicas == 4
    assert action.pools["decode"].replicas == 1
    assert action.pools["prefill"].max_num_batched_tokens == 2048
    assert action.pools["decode"].max_num_seqs == 512


def test_the_cold_start_feature_is_opt_in_and_shows_the_randomised_cold_start() -> None:
    assert "cluster/cold_start" not in feature_names(ObservationConfig())
    observation = ObservationConfig(cold_start_feature=True, reference_cold_start_s=300.0)
    assert feature_names(observation)[-1] == "cluster/cold_start"
    slow = RandomizationConfig(cold_start_multiplier=[3.0, 3.0])
    values = []
    for randomization in (RandomizationConfig(), slow):
        environment = DisaggClusterEnv("steady", config=EnvConfig(observation=observation, horizon_s=60.0,
                                                                  randomization=randomization))
        first, _ = environment.reset(seed=0)
        factor = 3.0 if randomization is slow else 1.0
        assert environment.world.cluster.cold_start_s == pytest.approx(60.0 * factor)
        values.append(features(environment, first)["cluster/cold_start"])
    assert values == pytest.approx([60.0 / 300.0, 180.0 / 300.0])  # steady's 60 s, then three times it
    with pytest.raises(ConfigError, match="reference_cold_start_s"):
        ObservationConfig(reference_cold_start_s=0.0)


def test_the_budget_features_are_opt_in_appended_and_count_the_episode() -> None:
    plain, with_budget = feature_names(ObservationConfig()), feature_names(ObservationConfig(budget_features=True))
    assert "cluster/time_left" not in plain
    assert with_budget[:len(plain)] == plain  # appended: the old layout is a prefix
    assert with_budget[len(plain):] == [*(f"tenant{i}/miss_budget_left" for i in range(4)), "cluster/time_left"]
    script = [SnapshotSpec(), SnapshotSpec(tenants={"chat": TenantSpecimen(met=90)}),
              SnapshotSpec(tenants={"chat": TenantSpecimen(met=99, missed=1)}),
              SnapshotSpec(tenants={"chat": TenantSpecimen(met=0, missed=5)})]
    environment, _ = scripted_env(script, budget_features=True)
    first, _ = environment.reset(seed=0)
    assert features(environment, first)["tenant0/miss_budget_left"] == 1.0
    assert features(environment, first)["cluster/time_left"] == 1.0
    seen = []
    for _ in range(3):
        observation, *_ = environment.step(environment.codec.neutral(environment.snapshot))
        seen.append(features(environment, observation))
    assert seen[0]["tenant0/miss_budget_left"] == 1.0 and seen[0]["cluster/time_left"] == pytest.approx(0.9)
    # 189 met, 1 missed: a 0.99 target allows 1.9 misses for 190 judged requests
    assert seen[1]["tenant0/miss_budget_left"] == pytest.approx(1 - 1 / 1.9)
    assert seen[2]["tenant0/miss_budget_left"] == pytest.approx(1 - 6 / 1.95)  # overspent: negative
    assert seen[2]["cluster/time_left"] == pytest.approx(0.7)  # 90 s of the 300 s episode
    assert seen[2]["tenant1/miss_budget_left"] == 1.0  # summarise: nothing judged, nothing spent
    assert seen[2]["tenant2/miss_budget_left"] == 0.0  # an empty slot
    environment.reset(seed=1)
    assert environment.observer.size == len(with_budget)


def test_the_peak_rate_ratio_says_a_burst_has_come_and_gone_and_restarts_each_period() -> None:
    plain, with_burst = feature_names(ObservationConfig()), feature_names(ObservationConfig(burst_features=True))
    assert with_burst == plain + [f"tenant{i}/peak_rate_ratio" for i in range(4)]  # appended: old layout a prefix
    base, burst = TenantSpecimen(arrived=30), TenantSpecimen(arrived=300)  # 1 req/s, then 10 req/s
    script = [SnapshotSpec()] + [SnapshotSpec(tenants={"chat": base})] * 4 + [SnapshotSpec(tenants={"chat": burst})] * 2
    script += [SnapshotSpec(tenants={"chat": base})] * 20
    environment, _ = scripted_env(script, burst_features=True, trend_halflife_intervals=1.0)
    environment.reset(seed=0)
    ratios = []
    for _ in range(len(script) - 1):
        observation, *_ = environment.step(environment.codec.neutral(environment.snapshot))
        ratios.append(features(environment, observation)["tenant0/peak_rate_ratio"])
    assert ratios[:6] == [0.0] * 6  # the average rises to the base rate, then into the burst: it is its own peak
    assert 0.0 < ratios[6] < ratios[7] < ratios[8] < ratios[9]  # after it: log2(peak average / average now) grows
    assert 2.0 < ratios[9] < math.log2(10.0)  # as the average falls back towards the base rate
    assert ratios[10] == 0.0  # 300 s episode = the SLO period: the 11th interval starts the next, peaks forgotten
    assert features(environment, observation)["tenant1/peak_rate_ratio"] == 0.0  # nothing arrived, nothing peaked


def test_an_observer_joining_a_period_with_its_history_observes_as_one_that_ran_through_it() -> None:
    """A controller that starts mid-period replays the period so far (``join_period(elapsed, history)``): its
    budgets, arrival trends and peaks then equal those of an observer that saw every interval, so the features
    of every later interval are identical. Without the history the budget, trend and peak differ."""
    def interval(index: int) -> SnapshotSpec:
        burst = 3 <= index <= 5  # chat bursts (6x) in intervals 3-5 and misses 2 requests in each; the join is after
        chat = TenantSpecimen(arrived=240, met=238, missed=2) if burst else TenantSpecimen(arrived=40, met=40)
        return SnapshotSpec(tenants={"chat": chat,
                                     "summarise": TenantSpecimen(arrived=10, met=10)},
                            pools={"prefill": PoolSpecimen(ready=2), "decode": PoolSpecimen(ready=2)})

    snapshots = [make_snapshot(interval(i), 30.0 * i, 30.0 * (i + 1)) for i in range(12)]
    config = EnvConfig(observation=ObservationConfig(budget_features=True, burst_features=True))
    through, joined, afresh = (interface(config, small_scenario(), period_s=600.0)[1] for _ in range(3))
    for snapshot in snapshots[:8]:
        through.build(snapshot, (0, 0))
    joined.join_period(240.0, snapshots[:8])
    afresh.join_period(240.0)
    names = through.names
    for snapshot in snapshots[8:]:
        expected = through.build(snapshot, (0, 0))
        assert joined.build(snapshot, (0, 0)).tolist() == expected.tolist()
        differs = {n for n, a, b in zip(names, afresh.build(snapshot, (0, 0)), expected, strict=True) if a != b}
        assert {"tenant0/miss_budget_left", "tenant0/arrival_trend", "tenant0/peak_rate_ratio"} <= differs
    assert dict(zip(names, expected.tolist(), strict=True))["tenant0/peak_rate_ratio"] > 0.5  # the burst is seen
