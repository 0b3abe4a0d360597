"""``static_oracle``: hindsight search of fixed configurations on the same simulated episode."""

from __future__ import annotations

import pytest

from disaggpilot.agent.baselines import BaselineError, StaticOraclePolicy
from disaggpilot.agent.baselines.oracle_search import Candidate, Evaluation, best_of, smallest_meeting
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.summary import summarize
from tests.agent.baselines.helpers import context
from tests.env.sim.conftest import small_scenario


def trial(count: int, meets: bool, per_usd: float = 1.0, worst: float = 0.5) -> Evaluation:
    return Evaluation(Candidate((("decode", count),), 8192, 256), {}, meets, worst, 0.0, 0.0, per_usd)


def test_smallest_meeting_finds_the_threshold_with_few_trials() -> None:
    tried: list[int] = []
    def evaluate(count: int) -> Evaluation:
        tried.append(count)
        return trial(count, count >= 5)
    assert smallest_meeting(evaluate, 1, 31) == 5
    assert len(set(tried)) <= 7
    assert smallest_meeting(lambda n: trial(n, False), 1, 31) is None


def test_best_of_prefers_goodput_per_dollar_among_feasible_else_attainment() -> None:
    feasible = [trial(1, True, 5.0), trial(2, True, 9.0), trial(3, False, 50.0, 0.9)]
    assert best_of(feasible).candidate.replicas == (("decode", 2),)
    infeasible = [trial(1, False, 9.0, 0.8), trial(2, False, 1.0, 0.95)]
    assert best_of(infeasible).candidate.replicas == (("decode", 2),)


def test_search_meets_targets_and_beats_the_static_default_on_the_same_episode() -> None:
    scenario, config = small_scenario(duration_s=300.0), EnvConfig()
    oracle = StaticOraclePolicy()
    result = oracle.search(scenario, 3, config)
    default = next(e for e in result.evaluations if e.candidate.replicas == (("prefill", 2), ("decode", 2)))
    assert result.best.meets_targets
    assert default.meets_targets and result.best.tokens_per_usd >= default.tokens_per_usd
    assert result.best.candidate.replicas == (("prefill", 2), ("decode", 1))
    assert len(result.evaluations) <= 12
    # the harness plays the same episode with the chosen configuration and sees the searched figures
    env = DisaggClusterEnv(scenario, config=config)
    observation, _ = env.reset(seed=3)
    oracle.reset(context(env.world))
    done = False
    while not done:
        observation, _, _, done, _ = env.step_targets(oracle.act(observation, env.history))
    summary = summarize(env.history, env.world.tenants)
    assert summary.goodput_tokens_per_usd == pytest.approx(result.best.tokens_per_usd)


def test_search_duration_and_knob_levels_and_the_cache() -> None:
    scenario = small_scenario(duration_s=600.0)
    oracle = StaticOraclePolicy(search_duration_s=120.0, batch_cap_levels=[64, 256])
    first = oracle.search(scenario, 0, EnvConfig())
    assert {e.candidate.cap for e in first.evaluations} == {64, 256}
    again = StaticOraclePolicy(search_duration_s=120.0, batch_cap_levels=[64, 256]).search(scenario, 0, EnvConfig())
    assert again.best is first.best  # served from the cache


def test_reset_needs_a_search_of_this_episode() -> None:
    with pytest.raises(BaselineError, match=r"call search\(scenario, seed, env_config\)"):
        StaticOraclePolicy().reset(context())
    oracle = StaticOraclePolicy(search_duration_s=60.0)
    oracle.search(small_scenario(duration_s=300.0), 0)
    with pytest.raises(BaselineError, match="another episode"):
        oracle.reset(context(small_scenario(rate_rps=9.0)))


def test_seed_setting_searches_inside_reset() -> None:
    oracle = StaticOraclePolicy(search_duration_s=60.0, seed=0)
    scenario = small_scenario(duration_s=300.0)
    oracle.reset(context(scenario))
    assert oracle.result is not None and oracle.result.seed == 0
