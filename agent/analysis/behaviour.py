"""What a policy does as a function of what it sees: a recorded episode (observation, action, reward terms
per interval) and, for a trained bundle, its action over a grid of two observation features.

:func:`record_episode` drives the policy exactly as the evaluation harness does (``step_targets``, the same
context and hooks), keeping what the harness's records drop: the observation the policy acted on, the
replica change it asked for, and the environment's ``info`` (every reward term, every tenant's attainment).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from disaggpilot.agent.evaluation.episode import EpisodeTask, play
from disaggpilot.agent.evaluation.policies import PolicySpec
from disaggpilot.agent.policy import Policy
from disaggpilot.agent.ppo_policy import PpoPolicy
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.errors import require
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import ScenarioConfig

REWARD_TERMS = ("reward/econ", "reward/slo_penalty", "reward/switching_cost")
"""The ``info`` keys whose sum is the reward (``env.reward``)."""


@dataclass
class StepLog:
    """One control interval as the policy lived it."""

    time_s: float
    """End of the interval the policy acted on (seconds since the episode began)."""
    observation: dict[str, float]
    """The observation it acted on, by feature name (raw, before any normalisation)."""
    snapshot: MetricsSnapshot
    """The snapshot it acted on (its masks apply to a bundle's action)."""
    targets: dict[str, int]
    """Replicas asked for (ready + starting) after the action, per pool (clipped to bounds and budget)."""
    change: dict[str, int]
    """``targets`` minus the replicas asked for before the action, per pool."""
    reward: float
    """The interval's reward (reward units)."""
    info: dict[str, float]
    """The numeric ``info`` entries of the step: ``reward/*``, ``econ/*``, ``slo/<tenant>/*``, ``action/*``."""


@dataclass
class EpisodeLog:
    """A recorded episode of one policy."""

    policy: str
    scenario: str
    seed: int
    roles: list[str]
    """The scaled pools, in action order."""
    steps: list[StepLog] = field(default_factory=list)

    def minutes(self) -> list[float]:
        """Each step's interval end (minutes)."""
        return [step.time_s / 60.0 for step in self.steps]

    def feature(self, name: str) -> list[float]:
        """The observation feature ``name`` per step (raises ``KeyError`` naming it when unknown)."""
        return [step.observation[name] for step in self.steps]

    def info(self, key: str) -> list[float]:
        """The ``info`` entry ``key`` per step (NaN where a step lacks it)."""
        return [step.info.get(key, math.nan) for step in self.steps]

    def changes(self, role: str) -> list[int]:
        """The replica change asked for in pool ``role`` per step."""
        return [step.change[role] for step in self.steps]

    def targets(self, role: str) -> list[int]:
        """The replicas asked for in pool ``role`` after each step's action."""
        return [step.targets[role] for step in self.steps]

    def rewards(self) -> list[float]:
        """The reward per step."""
        return [step.reward for step in self.steps]


def _numeric(info: dict[str, Any]) -> dict[str, float]:
    return {key: float(value) for key, value in info.items() if isinstance(value, int | float)}


def record_episode(policy: Policy, scenario: ScenarioConfig, seed: int, env: EnvConfig | None = None,
                   reward: RewardConfig | None = None, spec: PolicySpec | None = None) -> EpisodeLog:
    """Run ``policy`` for one episode of ``scenario`` and ``seed`` and keep every step.

    Args:
        policy: a built policy (``agent.evaluation.build_policy``); it is reset for the episode, so a bundle
            policy is ready for :func:`action_surface` afterwards.
        scenario: the scenario (cut to the wanted duration).
        seed: the episode seed (the same seed gives the same requests as in an evaluation).
        env: environment settings (default ``EnvConfig()``).
        reward: reward settings (default ``RewardConfig()``).
        spec: the policy's config, for ``sees_future`` policies (default: a plain policy named ``policy.name``).
    """
    spec = spec or PolicySpec(name=policy.name, kind="recorded")
    task = EpisodeTask(index=0, policy=spec, scenario=scenario, seed=seed, env=env or EnvConfig(),
                       reward=reward or RewardConfig())
    steps: list[StepLog] = []

    def keep(environment: DisaggClusterEnv, observation: np.ndarray, step_reward: float,
             info: dict[str, Any]) -> None:
        before, now = environment.history[-2], environment.history[-1]
        asked, after = environment.codec.targets(before), environment.codec.targets(now)
        seen = dict(zip(environment.observer.names, (float(v) for v in observation), strict=True))
        roles = environment.codec.roles
        steps.append(StepLog(before.end_s, seen, before, {r: after[r] for r in roles},
                             {r: after[r] - asked[r] for r in roles}, step_reward, _numeric(info)))

    trace = play(policy, task, on_step=keep)
    return EpisodeLog(policy.name, scenario.name, seed, list(trace.roles), steps)


@dataclass
class ActionSurface:
    """A bundle's action over a grid of two features, every other feature held at a base observation.

    Attributes:
        x_feature, y_feature: the varied features.
        x_values, y_values: their grid values (raw observation units).
        actions: action dimension → grid of chosen values, ``[y index][x index]``: replica changes for
            ``<role>_replica_change`` dimensions, the token budget or batch cap for the knob dimensions.
    """

    x_feature: str
    y_feature: str
    x_values: list[float]
    y_values: list[float]
    actions: dict[str, list[list[float]]]


def action_surface(policy: PpoPolicy, step: StepLog, x_feature: str, x_values: Sequence[float],
                   y_feature: str, y_values: Sequence[float]) -> ActionSurface:
    """What ``policy`` chooses when ``x_feature`` and ``y_feature`` take each pair of grid values and every
    other feature keeps its value at ``step`` (a partial-dependence view: pairs the policy never met in
    training, such as a high load with an empty queue, show extrapolation). The masks of ``step``'s
    snapshot apply, as they did in the episode.

    Raises:
        ConfigError: a feature is not in the observation, or a grid is empty.
        BundleError: the policy was not reset for an episode (run :func:`record_episode` first).
    """
    names = list(step.observation)
    for key, value in (("x_feature", x_feature), ("y_feature", y_feature)):
        require(value in names, key, value, "name an observation feature (EpisodeLog.steps[i].observation)")
    require(len(x_values) > 0 and len(y_values) > 0, "x_values/y_values", (len(x_values), len(y_values)),
            "give at least one grid value per feature")
    base = np.array([step.observation[name] for name in names], dtype=np.float32)
    x_at, y_at = names.index(x_feature), names.index(y_feature)
    grids: dict[str, list[list[float]]] = {}
    for y in y_values:
        rows = [_choice(policy, base, (x_at, x), (y_at, y), step.snapshot) for x in x_values]
        for dimension, _ in rows[0].items():
            grids.setdefault(dimension, []).append([row[dimension] for row in rows])
    return ActionSurface(x_feature, y_feature, [float(v) for v in x_values], [float(v) for v in y_values], grids)


def _choice(policy: PpoPolicy, base: np.ndarray, x: tuple[int, float], y: tuple[int, float],
            snapshot: MetricsSnapshot) -> dict[str, float]:
    observation = base.copy()
    observation[x[0]], observation[y[0]] = x[1], y[1]
    indices = policy.raw_action(observation, snapshot)
    if policy.sizer is not None:  # headroom mode: the action is a utilisation level per pool
        levels = policy.sizer.settings
        return {"prefill_utilization_level": levels.prefill_utilization_levels[int(indices[0])],
                "decode_utilization_level": levels.decode_utilization_levels[int(indices[1])]}
    codec = policy.codec
    assert codec is not None  # raw_action raised otherwise
    chosen: dict[str, float] = {}
    for i, name in enumerate(codec.names):
        if name.endswith("_replica_change"):
            chosen[name] = float(int(indices[i]) - codec.config.max_step)
        elif name == "prefill_token_budget_level":
            chosen[name] = float(codec.config.token_budget_levels[int(indices[i])])
        else:
            chosen[name] = float(codec.config.batch_cap_levels[int(indices[i])])
    return chosen


def reward_terms(log: EpisodeLog) -> dict[str, list[float]]:
    """Each reward term per step (``reward/econ``, ``reward/slo_penalty``,
    ``reward/switching_cost``) and their ``total``, which equals the environment's reward."""
    terms = {key: log.info(key) for key in REWARD_TERMS}
    terms["total"] = [sum(values) for values in zip(*terms.values(), strict=True)]
    return terms
