"""Domain randomisation of the simulator's own models (a step-time model and a routing staleness per episode)
and of when scripted bursts come."""

from __future__ import annotations

import numpy as np
import pytest

from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.randomization import RandomizationConfig, randomize
from disaggpilot.env.scenario import load_scenario
from tests.env.sim.conftest import small_scenario

MODELS = RandomizationConfig(perf_models=["roofline", "tp-comm"], routing_staleness_s=[0.0, 0.2])


def worlds(config: RandomizationConfig, seeds: range) -> list[tuple[str, float, float]]:
    """(step-time model, staleness, load factor) of the worlds ``config`` draws for each seed."""
    drawn = []
    for seed in seeds:
        world, factors = randomize(small_scenario(), config, np.random.default_rng(seed), 2.0, 50.0)
        drawn.append((world.perf_model, world.cluster.routing_staleness_s, factors["load_multiplier"]))
    return drawn


def test_both_models_and_a_spread_of_staleness_are_drawn_within_bounds() -> None:
    drawn = worlds(MODELS, range(40))
    assert {model for model, _, _ in drawn} == {"roofline", "tp-comm"}
    staleness = [age for _, age, _ in drawn]
    assert all(0.0 <= age <= 0.2 for age in staleness) and max(staleness) - min(staleness) > 0.1
    assert MODELS.enabled


def test_drawing_the_models_leaves_every_other_draw_of_a_seed_unchanged() -> None:
    loads = RandomizationConfig(load_multiplier=[0.5, 2.0])
    both = RandomizationConfig(load_multiplier=[0.5, 2.0], perf_models=["tp-comm"], routing_staleness_s=[0.1, 0.1])
    assert [load for *_, load in worlds(loads, range(10))] == [load for *_, load in worlds(both, range(10))]
    assert {(model, age) for model, age, _ in worlds(both, range(10))} == {("tp-comm", 0.1)}
    assert worlds(RandomizationConfig(), range(3)) == [("roofline", 0.0, 1.0)] * 3  # off: the scenario's own


def test_an_episode_runs_on_the_drawn_model_and_reports_it() -> None:
    environment = DisaggClusterEnv(small_scenario(duration_s=120.0), config=EnvConfig(
        randomization=RandomizationConfig(perf_models=["tp-comm"], routing_staleness_s=[0.05, 0.05])))
    _, info = environment.reset(seed=0)
    assert environment.world.perf_model == "tp-comm" and environment.world.cluster.routing_staleness_s == 0.05
    assert info["randomization/perf_model"] == 1.0 and info["randomization/routing_staleness_s"] == 0.05
    environment.step(environment.action_space.sample())


@pytest.mark.parametrize(("settings", "message"), [
    ({"perf_models": ["magic"]}, r"env\.randomization\.perf_models='magic' is invalid: use names among"),
    ({"routing_staleness_s": [0.2, 0.1]}, r"env\.randomization\.routing_staleness_s=\[0\.2, 0\.1\] is invalid"),
])
def test_bad_model_settings_name_the_key(settings: dict[str, list], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RandomizationConfig(**settings)


def _starts(world: object) -> list[float]:
    return [change.start_s for tenant in world.tenants for change in tenant.arrival.changes]  # type: ignore[attr-defined]


def test_a_burst_shift_moves_every_change_by_one_draw_and_leaves_other_draws_alone() -> None:
    scenario = load_scenario("noisy_neighbor")
    shifted = RandomizationConfig(load_multiplier=[0.5, 2.0], burst_shift_s=[-600.0, 900.0])
    plain = RandomizationConfig(load_multiplier=[0.5, 2.0])
    shifts = []
    for seed in range(20):
        world, factors = randomize(scenario, shifted, np.random.default_rng(seed), 2.0, 50.0)
        _, plain_factors = randomize(scenario, plain, np.random.default_rng(seed), 2.0, 50.0)
        assert factors["load_multiplier"] == plain_factors["load_multiplier"]
        assert -600.0 <= factors["burst_shift_s"] <= 900.0
        assert _starts(world) == [start + factors["burst_shift_s"] for start in _starts(scenario)]
        shifts.append(factors["burst_shift_s"])
    assert max(shifts) - min(shifts) > 600.0 and shifted.enabled
    assert _starts(scenario) == [2400.0]  # the configured scenario is not modified


def test_a_shift_never_moves_a_change_before_the_episode_starts() -> None:
    world, factors = randomize(load_scenario("flash_crowd"), RandomizationConfig(burst_shift_s=[-5000.0, -4000.0]),
                               np.random.default_rng(0), 2.0, 50.0)
    assert factors["burst_shift_s"] <= -4000.0 and _starts(world) == [0.0]


def test_a_backwards_shift_range_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"env\.randomization\.burst_shift_s=\[10\.0, -10\.0\] is invalid"):
        RandomizationConfig(burst_shift_s=[10.0, -10.0])
