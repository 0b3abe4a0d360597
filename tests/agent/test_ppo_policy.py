"""``ModelPolicy``: a model's action indices played through the evaluation loop, as training's env steps them."""

from __future__ import annotations

import numpy as np
import pytest

from disaggpilot.agent.errors import PolicyStateError
from disaggpilot.agent.evaluation.episode import EpisodeTask, play
from disaggpilot.agent.evaluation.policies import PolicySpec
from disaggpilot.agent.ppo_policy import ModelPolicy
from disaggpilot.env.action import ActionConfig
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.scenario import load_scenario

SHORT = EnvConfig(horizon_s=600.0)


class Alternating:
    """A predictor that grows prefill by one, then shrinks it by one, at the fourth budget level and third cap
    level; a fresh one starts with growth."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, observation: np.ndarray, masks: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.array([3 if self.calls % 2 else 1, 2, 3, 2])


def test_a_delta_model_policy_plays_the_episode_the_environment_steps() -> None:
    trace = play(ModelPolicy(Alternating(), SHORT.action), EpisodeTask(
        0, PolicySpec(name="model", kind="validation"), load_scenario("steady"), 0, env=SHORT))
    alternating = Alternating()
    environment = DisaggClusterEnv(load_scenario("steady"), config=SHORT)
    observation, _ = environment.reset(seed=0)
    done = False
    while not done:
        action = alternating(observation, environment.action_masks())
        observation, _, terminated, truncated, _ = environment.step(action)
        done = terminated or truncated
    stepped = environment.history[1:]
    assert [s.pools["prefill"].replicas_billed for s in trace.snapshots] == \
        [s.pools["prefill"].replicas_billed for s in stepped]
    assert [s.pools["prefill"].max_num_batched_tokens for s in trace.snapshots] == \
        [s.pools["prefill"].max_num_batched_tokens for s in stepped]
    assert trace.snapshots[-1].cost_usd == pytest.approx(stepped[-1].cost_usd)
    assert len({s.pools["prefill"].replicas_billed for s in stepped}) > 1  # the actions moved the pool


def test_acting_before_reset_is_an_error_that_says_so() -> None:
    policy = ModelPolicy(Alternating(), ActionConfig())
    with pytest.raises(PolicyStateError, match="'ppo': call reset"):
        policy.raw_action(np.zeros(3), None)  # type: ignore[arg-type]
