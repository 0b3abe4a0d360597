"""A teacher for the warm start: distil per-workload settings into one policy (behaviour cloning, then DAgger).

The specialists' fixed points (docs/experiments/2026-12-07-fixed-points.md) each hold one workload's targets
and beat the fixed configuration there, but no single setting holds on every workload. A generalist has to
recognise the workload from what a live controller observes and switch settings. The teacher labels every
observation of a scenario's episode with that scenario's validated setting, and the policy network learns
the map by cross-entropy on the observations only, as in policy distillation (Rusu et al., "Policy
Distillation", ICLR 2016). DAgger (Ross, Gordon, Bagnell, AISTATS 2011) rounds then roll out the learner's
own choices and label the states it reaches, so the student also learns what to do where its own mistakes
lead. PPO fine-tunes afterwards on the contract reward.

Only the observation goes in: the scenario's name never reaches the network, so what is learned is a
recognition from rates, lengths, attainment and pool state, which is all the controller has on a live cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from sb3_contrib import MaskablePPO

from disaggpilot.agent.errors import PolicyConfigError
from disaggpilot.agent.headroom import HeadroomEnv, HeadroomSettings
from disaggpilot.agent.training.teacher_config import TeacherConfig
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import ScenarioConfig

log = logging.getLogger("disaggpilot.train")

Actor = Callable[[np.ndarray], np.ndarray]


def rollout(scenario: ScenarioConfig, seed: int, env_config: EnvConfig, reward: RewardConfig,
            headroom: HeadroomSettings, act: Actor | None, teacher: TeacherConfig) -> tuple[np.ndarray, np.ndarray]:
    """The observations of one episode in which ``act`` (the teacher when None) chooses, and the teacher's
    label of each (:meth:`TeacherConfig.label_at`, in the episode's randomised world)."""
    environment = HeadroomEnv(DisaggClusterEnv(scenario, config=env_config, reward=reward), headroom)
    observation, _ = environment.reset(seed=seed)
    seen, labels, done = [], [], False
    while not done:
        label = teacher.label_at(environment.cluster_env.world, environment.cluster_env.history[-1].end_s,
                                 headroom.nvec)
        seen.append(observation)
        labels.append(label)
        action = label if act is None else act(observation)
        observation, _, terminated, truncated, _ = environment.step(action)
        done = terminated or truncated
    return np.asarray(seen, dtype=np.float32), np.asarray(labels, dtype=np.int64)


def collect(scenarios: Sequence[ScenarioConfig], teacher: TeacherConfig, env_config: EnvConfig,
            reward: RewardConfig, headroom: HeadroomSettings, act: Actor | None) -> tuple[np.ndarray, np.ndarray]:
    """Observations of every scenario and teacher seed, each labelled with the teacher's action there."""
    observations, labels = [], []
    for scenario in scenarios:
        teacher.label(scenario.name, headroom.nvec)  # every scenario needs a label before any episode runs
        for seed in teacher.seeds:
            seen, labelled = rollout(scenario, seed, env_config, reward, headroom, act, teacher)
            observations.append(seen)
            labels.append(labelled)
    return np.concatenate(observations), np.concatenate(labels)


def fit(model: MaskablePPO, observations: np.ndarray, labels: np.ndarray, teacher: TeacherConfig,
        seed: int) -> float:
    """Cross-entropy of ``model``'s policy on the (normalised) observations; returns the label accuracy."""
    scaled = _normalised(model, observations)
    inputs = torch.as_tensor(scaled, dtype=torch.float32)
    targets = torch.as_tensor(labels, dtype=torch.int64)
    optimizer = torch.optim.Adam(model.policy.parameters(), lr=teacher.learning_rate)
    generator = torch.Generator().manual_seed(seed)
    model.policy.set_training_mode(True)
    for _ in range(teacher.epochs):
        for batch in torch.randperm(len(inputs), generator=generator).split(teacher.batch_size):
            _, log_prob, _ = model.policy.evaluate_actions(inputs[batch], targets[batch])
            loss = -log_prob.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.policy.set_training_mode(False)
    return accuracy(model, scaled, labels)


def accuracy(model: MaskablePPO, scaled: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of observations on which the greedy action equals the label in every dimension."""
    chosen, _ = model.predict(scaled, deterministic=True)
    return float(np.mean(np.all(np.asarray(chosen) == labels, axis=1)))


def _normalised(model: MaskablePPO, observations: np.ndarray) -> np.ndarray:
    normalizer = model.get_vec_normalize_env()
    return observations if normalizer is None else np.asarray(normalizer.normalize_obs(observations))


def greedy_actor(model: MaskablePPO) -> Actor:
    """The student's deterministic action on one raw observation."""
    def act(observation: np.ndarray) -> np.ndarray:
        action, _ = model.predict(_normalised(model, observation[None, :]), deterministic=True)
        return np.asarray(action).reshape(-1)
    return act


def distil(model: MaskablePPO, scenarios: Sequence[ScenarioConfig], teacher: TeacherConfig,
           env_config: EnvConfig, reward: RewardConfig, headroom: HeadroomSettings | None, seed: int) -> float:
    """Clone the teacher into ``model`` (behaviour cloning, then DAgger rounds); the last round's accuracy.

    The observation normaliser (when the model has one) takes its statistics from the teacher's states, so
    PPO then starts from the same scaling the cloned network learned on.
    """
    if headroom is None:
        raise PolicyConfigError("agent.teacher needs agent.action_mode=headroom (its actions are sizer settings)")
    observations, labels = collect(scenarios, teacher, env_config, reward, headroom, act=None)
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        normalizer.obs_rms.update(observations)
    score = fit(model, observations, labels, teacher, seed)
    log.info("teacher: behaviour cloning on %d states, accuracy %.3f", len(labels), score)
    for round_index in range(teacher.dagger_rounds):
        more, more_labels = collect(scenarios, teacher, env_config, reward, headroom, act=greedy_actor(model))
        observations, labels = np.concatenate([observations, more]), np.concatenate([labels, more_labels])
        score = fit(model, observations, labels, teacher, seed + round_index + 1)
        log.info("teacher: DAgger round %d, %d states, accuracy %.3f", round_index + 1, len(labels), score)
    return score
