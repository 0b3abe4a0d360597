"""Every baseline drives the simulated small scenario through ``DisaggClusterEnv.step_targets``."""

from __future__ import annotations

import math

import pytest

from disaggpilot.agent.baselines import BASELINES, make_baseline
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.summary import summarize
from tests.env.sim.conftest import small_scenario

SETTINGS: dict[str, dict[str, object]] = {
    "static_oracle": {"search_duration_s": 120.0},
    "static_tuned": {"search_duration_s": 120.0, "cache_dir": None},
    "sla_planner": {"adjustment_interval_s": 60.0, "predictor": "holt"},
    "dynamic_oracle": {"max_simulations": 2, "cache_dir": None},
}


@pytest.mark.parametrize("kind", sorted(BASELINES))
def test_baseline_runs_a_short_episode(kind: str) -> None:
    scenario, config = small_scenario(duration_s=300.0), EnvConfig(interval_s=30.0)
    env = DisaggClusterEnv(scenario, config=config)
    policy = make_baseline(kind, **SETTINGS.get(kind, {}))
    if hasattr(policy, "search"):
        policy.search(scenario, 7, config)
    if hasattr(policy, "calibrate"):
        policy.calibrate(scenario, config)
    observation, _ = env.reset(seed=7)
    policy.reset(PolicyContext(env.world, config.interval_s, requests=getattr(env.backend, "requests", None),
                               feature_names=list(env.observer.names)))
    done, steps = False, 0
    while not done:
        observation, reward, _, done, _ = env.step_targets(policy.act(observation, env.history))
        assert math.isfinite(reward)
        steps += 1
    summary = summarize(env.history, env.world.tenants)
    assert steps == 10 and summary.cost_usd > 0 and 0.0 <= summary.min_attainment <= 1.0
