"""``dynamo_planner``: today's Dynamo planner's throughput lower bound and load-based decisions, by hand."""

from __future__ import annotations

import pytest

from disaggpilot.agent.baselines import DynamoPlannerPolicy
from disaggpilot.agent.baselines.dynamo_planner import load_decision
from disaggpilot.agent.sizing.profile import PerfProfile
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.testing import PoolSpecimen, SnapshotSpec, TenantSpecimen
from tests.agent.baselines.fakes import RoundProfile
from tests.agent.baselines.helpers import context, history, spec
from tests.env.sim.conftest import small_scenario


def interval(prefill_waiting: float, decode: PoolSpecimen, requests: int = 600) -> SnapshotSpec:
    """30 s of ``requests`` requests (prompt 2,100, output 300), two ready replicas per pool."""
    chat = TenantSpecimen(arrived=requests, met=requests, prompt_tokens=2100, output_tokens=300)
    return spec(PoolSpecimen(ready=2, waiting=prefill_waiting), decode, chat=chat)


BUSY_DECODE = PoolSpecimen(ready=2, running=40, waiting=4, kv_usage=0.5)


def replicas_after(policy: DynamoPlannerPolicy, specs: list[SnapshotSpec]) -> tuple[int, int]:
    """Targets after acting on every prefix of the history of ``specs``."""
    snapshots = history(specs)
    for steps in range(len(snapshots)):
        action = policy.act(None, snapshots[:steps + 1])  # type: ignore[arg-type]
    return action.pools["prefill"].replicas, action.pools["decode"].replicas


def test_load_rule() -> None:
    assert load_decision(1.05, 1.0, ready=2, sensitivity=0.8, min_endpoint=1) == 3
    assert load_decision(0.85, 1.0, ready=2, sensitivity=0.8, min_endpoint=1) is None
    assert load_decision(0.5, 1.0, ready=2, sensitivity=0.8, min_endpoint=1) == 1
    assert load_decision(0.5, 1.0, ready=1, sensitivity=0.8, min_endpoint=1) is None   # never below one
    assert load_decision(0.5, 1.0, ready=3, sensitivity=0.8, min_endpoint=3) == 3


def test_throughput_plan_is_a_lower_bound_on_a_load_decision() -> None:
    policy = DynamoPlannerPolicy(profile=RoundProfile(), throughput_adjustment_interval_s=30.0)
    policy.reset(context())  # targets: strictest tenant, TTFT 1.0 s, ITL 0.1 s
    # Throughput plan of 600 requests in 30 s = 20 rps at ISL 2,100, OSL 300:
    #   prefill = ceil(20 rps × TTFT(2,100) = 0.21 s) = ceil(4.2) = 5
    #   decode  = ceil(20 · 300 tok/s / (200 tok/s/GPU at ITL 0.1 s × 4 GPUs)) = ceil(7.5) = 8
    # Load loop, per engine (2 ready each):
    #   prefill: 8 waiting / 2 = 4 queued × 2,100 + one prompt 2,100 = 10,500 tokens → 1.05 s > 1.0 s → 2 + 1 = 3
    #   decode: 20 running, 2 waiting; KV 0.5 × 100,000 = 50,000 + 2 × 2,100 + 50,000 / 20 = 56,700 tokens;
    #           0.01 + 0.001 × 21 + 1e-6 × 56,700 = 0.0877 s, within [0.08, 0.1] → no change (ready 2)
    # Final: max(3, 5) = 5 prefill, max(2, 8) = 8 decode.
    assert replicas_after(policy, [spec(), interval(8, BUSY_DECODE)]) == (5, 8)
    assert policy.lower_bound() == {"prefill": 5, "decode": 8}


def test_no_load_decision_leaves_the_replicas_alone_whatever_the_lower_bound() -> None:
    policy = DynamoPlannerPolicy(profile=RoundProfile(), throughput_adjustment_interval_s=30.0)
    policy.reset(context())
    # prefill: 3 queued × 2,100 + 2,100 = 8,400 tokens → 0.84 s, within [0.8, 1.0]; decode as above: no change.
    # Dynamo sends nothing when neither pool moves, so the throughput bound (5, 8) waits for a load event.
    assert replicas_after(policy, [spec(), interval(6, BUSY_DECODE)]) == (2, 2)


def test_quiet_pools_shrink_one_at_a_time_and_without_load_scaling_the_plan_applies() -> None:
    quiet_decode = PoolSpecimen(ready=2, running=2, kv_usage=0.01)  # 0.01 + 0.002 + 1e-6 · 1,500 = 0.0135 s
    load_only = DynamoPlannerPolicy(profile=RoundProfile(), throughput_scaling=False)
    load_only.reset(context())
    # prefill 2,100 / 10,000 = 0.21 s < 0.8 s: 2 − 1; decode 0.0135 s < 0.08 s: 2 − 1
    assert replicas_after(load_only, [spec(), interval(0, quiet_decode)]) == (1, 1)
    plan_only = DynamoPlannerPolicy(profile=RoundProfile(), throughput_adjustment_interval_s=30.0, load_scaling=False)
    plan_only.reset(context())
    assert replicas_after(plan_only, [spec(), interval(0, quiet_decode)]) == (5, 8)


def test_settings_are_checked_and_the_interval_must_fit_the_environment() -> None:
    with pytest.raises(ConfigError, match="load_scaling"):
        DynamoPlannerPolicy(throughput_scaling=False, load_scaling=False)
    with pytest.raises(ConfigError, match="load_scaling_down_sensitivity"):
        DynamoPlannerPolicy(load_scaling_down_sensitivity=80)
    policy = DynamoPlannerPolicy(profile=RoundProfile(), throughput_adjustment_interval_s=45.0)
    with pytest.raises(ConfigError, match="throughput_adjustment_interval_s"):
        policy.reset(context())


def test_profile_estimates_agree_with_the_planner_profile() -> None:
    profile = PerfProfile(small_scenario())
    assert profile.queued_ttft_s(0.0, 800.0) == pytest.approx(profile.prefill_ttft_s(800.0))
    assert profile.queued_ttft_s(8192.0, 800.0) > profile.queued_ttft_s(0.0, 800.0) * 5
    assert profile.decode_step_s(16, 16 * 900.0) == pytest.approx(profile.decode_itl_s(16, 900.0))


def test_planner_runs_on_the_simulator_and_reacts_to_its_queues() -> None:
    scenario = small_scenario(rate_rps=8.0, prefill=1, decode=1, duration_s=900.0)
    env = DisaggClusterEnv(scenario, config=EnvConfig())
    observation, _ = env.reset(seed=1)
    policy = DynamoPlannerPolicy()
    policy.reset(context(env.world))
    done, prefill_seen = False, set()
    while not done:
        action = policy.act(observation, env.history)
        prefill_seen.add(action.pools["prefill"].replicas)
        observation, _, _, done, _ = env.step_targets(action)
    assert max(prefill_seen) > 1  # one prefill replica at 8 rps queues past the TTFT target: it scales up
