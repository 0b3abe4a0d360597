"""The warm start: the untrained policy sits at the prior action, and greedily plays the headroom planner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from stable_baselines3.common.vec_env import DummyVecEnv

from disaggpilot.agent.baselines import make_baseline
from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.headroom import HeadroomSettings
from disaggpilot.agent.training.config import PpoConfig, RunConfig
from disaggpilot.agent.training.prior import prior_logits
from disaggpilot.agent.training.runner import build_model, greedy_predictor, make_env_factory
from disaggpilot.agent.training.validation import run_model_episode, run_policy_episode
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import load_scenario

# the headroom planner's defaults (0.4, 0.6, 40 intervals) sit at indices (2, 1) of these levels
LEVELS = HeadroomSettings(prefill_utilization_levels=[0.3, 0.35, 0.4, 0.45, 0.5, 0.6],
                          decode_utilization_levels=[0.45, 0.6, 0.75, 0.9], demand_window_intervals=40)
SHORT = EnvConfig(horizon_s=1800.0)


def softmax(logits: np.ndarray) -> np.ndarray:
    exps = np.exp(logits - logits.max())
    return np.asarray(exps / exps.sum())


def test_prior_logits_put_the_probability_on_each_prior_index() -> None:
    logits = prior_logits([7, 4], [2, 1], 0.9)
    prefill, decode = softmax(logits[:7]), softmax(logits[7:])
    assert prefill[2] == pytest.approx(0.9) and decode[1] == pytest.approx(0.9)
    assert np.delete(prefill, 2) == pytest.approx(np.full(6, 0.1 / 6))
    assert np.delete(decode, 1) == pytest.approx(np.full(3, 0.1 / 3))
    one_choice = prior_logits([1, 4], [0, 1], 0.9)
    assert one_choice[0] == 0.0 and softmax(one_choice[1:])[1] == pytest.approx(0.9)


def test_bad_priors_name_the_field_and_the_fix() -> None:
    with pytest.raises(PolicyConfigError, match=r"agent\.prior_action=\[2\] has 1 indices .* 2 dimensions"):
        prior_logits([7, 4], [2], 0.9)
    with pytest.raises(PolicyConfigError, match=r"agent\.prior_action\[1\]=4 is out of range.*0\.\.3"):
        prior_logits([7, 4], [2, 4], 0.9)
    with pytest.raises(PolicyConfigError, match=r"agent\.prior_probability=1\.0 is invalid"):
        PpoConfig(prior_probability=1.0)
    with pytest.raises(PolicyConfigError, match=r"agent\.prior_action=\[-1, 0\] is invalid"):
        PpoConfig(prior_action=[-1, 0])


def test_the_untrained_warm_started_policy_plays_the_headroom_planner(tmp_path: Path) -> None:
    ppo = PpoConfig(action_mode="headroom", headroom=LEVELS, prior_action=[2, 1])
    run = RunConfig(n_envs=1, vec_env="dummy")
    scenario, reward = load_scenario("diurnal"), RewardConfig()
    vec = DummyVecEnv([make_env_factory([scenario], SHORT, reward, 0, LEVELS)])
    model = build_model(vec, ppo, run, tmp_path)
    observations = np.random.default_rng(0).normal(size=(64, *vec.observation_space.shape)).astype(np.float32)
    probabilities = model.policy.get_distribution(model.policy.obs_to_tensor(observations)[0])
    prefill = probabilities.distributions[0].probs.detach().numpy()  # type: ignore[attr-defined]
    assert prefill[:, 2].min() > 0.85  # the near-zero weights leave the bias in charge, whatever the input
    learned = run_model_episode(greedy_predictor(model), scenario, 3, SHORT, reward, None, LEVELS)
    planner = run_policy_episode(make_baseline("headroom_planner"), scenario, 3, SHORT, reward, None)
    assert learned.goodput_tokens_per_usd == pytest.approx(planner.goodput_tokens_per_usd)
    assert learned.cost_usd == pytest.approx(planner.cost_usd)
