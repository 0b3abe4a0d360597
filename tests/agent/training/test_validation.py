"""Validation: the Wilson lower bound, per-scenario judgement, and which model is kept."""

from __future__ import annotations

import math

import pytest

from disaggpilot.agent.baselines import make_baseline
from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.training.config import RunConfig
from disaggpilot.agent.training.validation import (
    ScenarioValidation,
    ValidationResult,
    aggregate,
    gain_over,
    run_policy_episode,
    wilson_lower_bound,
)
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import load_scenario

Z90 = 1.2815515655446004  # the standard normal's 0.9 quantile


def test_wilson_lower_bound_by_hand() -> None:
    # 95 of 100 at 0.9: (0.95 + z^2/200 - z sqrt(0.95 x 0.05 / 100 + z^2 / 40000)) / (1 + z^2 / 100)
    centre = 0.95 + Z90**2 / 200
    spread = Z90 * math.sqrt(0.000475 + Z90**2 / 40000)
    assert wilson_lower_bound(95, 100, 0.9) == pytest.approx((centre - spread) / (1 + Z90**2 / 100))
    assert wilson_lower_bound(95, 100, 0.9) == pytest.approx(0.91409, abs=1e-5)
    assert wilson_lower_bound(100, 100, 0.9) == pytest.approx(1 / (1 + Z90**2 / 100))  # 0.98384: never 1
    assert wilson_lower_bound(0, 0, 0.9) == 1.0  # nothing judged: nothing to hold against it
    assert wilson_lower_bound(950, 1000, 0.9) > wilson_lower_bound(95, 100, 0.9)  # more requests, tighter
    assert wilson_lower_bound(95, 100, 0.99) < wilson_lower_bound(95, 100, 0.9)


def scenario(name: str, tokens_per_usd: float, **attainments: tuple[float, float]) -> ScenarioValidation:
    """A scenario with 95 % targets; ``attainments`` maps tenant to (attainment, judged requests)."""
    return ScenarioValidation(name, goodput_tokens=tokens_per_usd * 100.0, cost_usd=100.0,
                              targets=dict.fromkeys(attainments, 0.95),
                              met={t: a * n for t, (a, n) in attainments.items()},
                              judged={t: n for t, (_, n) in attainments.items()})


def test_each_tenant_holds_by_its_lower_bound() -> None:
    big = scenario("diurnal", 1e6, chat=(0.953, 50_000), code=(0.96, 20_000))
    assert big.shortfall(0.9) == 0.0  # 0.953 of 50,000: the bound is 0.9518
    small = scenario("diurnal", 1e6, chat=(0.953, 200), code=(0.96, 20_000))
    assert small.shortfall(0.9) > 0.0  # 0.953 of 200 could be chance: not held
    short = scenario("steady", 1e6, chat=(0.9464, 50_000))
    assert short.shortfall(0.9) > 0.0036  # really below (0.0036 short, and the bound lower still)
    assert ValidationResult([big, short]).holds is False and ValidationResult([big]).holds is True


def test_a_gain_on_one_scenario_is_kept_unless_another_really_misses() -> None:
    best = ValidationResult([scenario("steady", 1.00e6, chat=(0.97, 50_000)),
                             scenario("flash_crowd", 1.00e6, chat=(0.97, 50_000))])
    gain = ValidationResult([scenario("steady", 1.08e6, chat=(0.96, 50_000)),
                             scenario("flash_crowd", 0.99e6, chat=(0.953, 50_000))])
    assert gain_over(gain, best) == pytest.approx(math.sqrt(1.08 * 0.99))
    assert gain.better_than(best)  # +8 % on steady outweighs -1 % on flash_crowd, both held
    worse = ValidationResult([scenario("steady", 1.08e6, chat=(0.96, 50_000)),
                              scenario("flash_crowd", 0.90e6, chat=(0.97, 50_000))])
    assert not worse.better_than(best)  # geometric mean 0.986
    missing = ValidationResult([scenario("steady", 1.08e6, chat=(0.96, 50_000)),
                                scenario("flash_crowd", 1.00e6, chat=(0.9464, 50_000))])
    assert not missing.better_than(best)  # flash_crowd's tenant is really below target
    assert missing.better_than(None)  # the first validation is kept, whatever it is
    assert best.better_than(missing) and best.score() == pytest.approx(1.0) and missing.score() < -1.0


def test_before_any_model_holds_the_nearest_is_kept() -> None:
    far = ValidationResult([scenario("steady", 2.0e6, chat=(0.90, 50_000))])
    near = ValidationResult([scenario("steady", 1.0e6, chat=(0.94, 50_000))])
    assert near.better_than(far) and not far.better_than(near)


def test_episodes_pool_by_scenario() -> None:
    steady = load_scenario("steady")
    episodes = [run_policy_episode(make_baseline("headroom_planner"), steady, seed, EnvConfig(horizon_s=900.0),
                                   RewardConfig(), None) for seed in (1000, 1001)]
    result = aggregate(episodes, 0.9)
    assert [s.scenario for s in result.scenarios] == ["steady"]
    pooled = result.scenarios[0]
    for tenant in pooled.targets:
        assert pooled.judged[tenant] == sum(e.judged[tenant] for e in episodes) > 0
        assert pooled.met[tenant] == sum(e.met[tenant] for e in episodes)
    assert pooled.tokens_per_usd == pytest.approx(sum(e.goodput_tokens for e in episodes)
                                                  / sum(e.cost_usd for e in episodes))


def test_the_old_margin_names_its_replacement_and_evaluation_seeds_are_refused() -> None:
    assert RunConfig(validation_attainment_margin=0.0).validation_seeds == [1000, 1001, 1002, 1003, 1004]
    with pytest.raises(PolicyConfigError, match=r"validation_attainment_margin=0\.01 .*validation_confidence"):
        RunConfig(validation_attainment_margin=0.01)
    with pytest.raises(ConfigError, match=r"run\.validation_seeds uses \[100\]"):
        RunConfig(validation_seeds=[100, 1000])
    with pytest.raises(PolicyConfigError, match="validation_confidence"):
        RunConfig(validation_confidence=1.0)
