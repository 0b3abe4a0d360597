"""The Gymnasium environment on the simulator: checkers, determinism, vectorisation, episodes, masks."""

from __future__ import annotations

import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

import disaggpilot.env  # noqa: F401  (registers the environment)
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.errors import ConfigError
from disaggpilot.env.observation import OBSERVATION_VERSION
from disaggpilot.env.randomization import RandomizationConfig
from disaggpilot.env.workload import ArrivalSpec, LengthSpec, TenantSpec
from tests.env.sim.conftest import small_scenario


def three_tenant_scenario():
    scenario = small_scenario(rate_rps=3.0, duration_s=300.0)
    scenario.tenants.append(TenantSpec(name="batch", ttft_slo_s=5.0, tpot_slo_s=0.2, attainment_target=0.9,
                                       arrival=ArrivalSpec(rate_rps=1.0),
                                       lengths=LengthSpec(prompt_mean=2000, output_mean=300)))
    return scenario


def short_env(scenario=None, **config) -> DisaggClusterEnv:
    return DisaggClusterEnv(scenario or small_scenario(duration_s=300.0), config=EnvConfig(**config))


@pytest.mark.parametrize("make", [lambda: gymnasium.make("disaggpilot/DisaggCluster-v0").unwrapped,
                                  lambda: short_env(three_tenant_scenario())], ids=["default", "three-tenants"])
def test_gymnasium_and_sb3_checkers_pass(make) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=UserWarning)  # the checkers warn on contract breaches
        gym_check_env(make(), skip_render_check=True)
    sb3_check_env(make(), warn=True)


def test_episode_truncates_at_the_horizon_and_never_terminates() -> None:
    environment = short_env(horizon_s=150.0)
    environment.reset(seed=0)
    outcomes = [environment.step(environment.action_space.sample()) for _ in range(5)]
    assert [o[3] for o in outcomes] == [False, False, False, False, True]
    assert not any(o[2] for o in outcomes)


def test_identical_seeds_give_identical_trajectories() -> None:
    def trajectory(seed: int) -> list[float]:
        environment = short_env(randomization=RandomizationConfig(load_multiplier=[0.5, 2.0]))
        observation, _ = environment.reset(seed=seed)
        environment.action_space.seed(seed)
        values = list(observation)
        for _ in range(6):
            observation, reward, *_ = environment.step(environment.action_space.sample())
            values += [*observation, reward]
        return values
    assert trajectory(3) == trajectory(3)
    assert trajectory(3) != trajectory(4)


def test_subprocess_vectorised_runs_match_in_process_runs() -> None:
    makers = [lambda: short_env() for _ in range(2)]
    actions = np.array([[2, 3, 1, 2], [1, 2, 3, 4]])
    results = []
    for vec_cls in (DummyVecEnv, SubprocVecEnv):
        vec = vec_cls(makers)
        vec.seed(11)
        observations = [vec.reset()]
        for _ in range(4):
            observation, reward, _, _ = vec.step(actions)
            observations += [observation, reward[:, None].astype(np.float32)]
        vec.close()
        results.append(np.concatenate([o.reshape(2, -1) for o in observations], axis=1))
    np.testing.assert_array_equal(results[0], results[1])


def test_info_carries_every_reward_term_and_tenant_attainment() -> None:
    environment = short_env(three_tenant_scenario())
    environment.reset(seed=1)
    _, reward, _, _, info = environment.step(environment.codec.neutral(environment.snapshot))
    terms = info["reward/econ"] + info["reward/slo_penalty"] + info["reward/switching_cost"]
    assert reward == pytest.approx(terms)
    assert {"slo/chat/attainment", "slo/summarise/attainment", "slo/batch/attainment"} <= set(info)
    assert info["econ/cost_usd"] > 0


def test_masks_forbid_going_below_minimum_or_over_the_gpu_budget() -> None:
    scenario = small_scenario(prefill=1, decode=2, duration_s=300.0, gpu_budget=16)
    environment = DisaggClusterEnv(scenario)
    environment.reset(seed=0)
    masks = environment.action_masks()
    prefill_mask, decode_mask = masks[:5], masks[5:10]
    assert prefill_mask.tolist() == [False, False, True, True, False]  # 1 replica: no -2/-1; 4 GPUs free
    assert decode_mask.tolist() == [False, True, True, True, False]    # min 1; +2 needs 8 GPUs
    assert masks[10:].all()


def test_scale_up_beyond_budget_is_clipped_and_reported() -> None:
    environment = DisaggClusterEnv(small_scenario(prefill=1, decode=2, duration_s=300.0, gpu_budget=16))
    environment.reset(seed=0)
    _, _, _, _, info = environment.step(np.array([4, 4, 2, 3]))
    assert info["action/clipped"] is True
    assert environment.snapshot.gpus_billed() <= 16


def test_spec_names_every_feature_and_dimension() -> None:
    environment = short_env()
    spec = environment.spec_dict()
    assert spec["observation_version"] == OBSERVATION_VERSION
    assert len(spec["observation_features"]) == environment.observation_space.shape[0]
    assert len(set(spec["observation_features"])) == len(spec["observation_features"])
    assert spec["action_nvec"] == environment.action_space.nvec.tolist()


def test_scenario_mix_with_different_pools_is_rejected() -> None:
    with pytest.raises(ConfigError, match="same pools"):
        DisaggClusterEnv(scenarios=[small_scenario(), small_scenario(prefill=0, decode=0, aggregated=2)])


def test_aggregated_pool_adds_an_action_dimension() -> None:
    environment = DisaggClusterEnv(small_scenario(aggregated=1, duration_s=300.0))
    assert environment.action_space.nvec.tolist() == [5, 5, 5, 4, 5]
    environment.reset(seed=0)
    environment.step(environment.action_space.sample())
