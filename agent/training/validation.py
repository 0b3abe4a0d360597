"""Validation during training: greedy episodes of the current policy against the SLA planner's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agent.evaluation.episode import EpisodeTask, play
from agent.evaluation.policies import PolicySpec
from agent.headroom import HeadroomSettings
from agent.policy import Policy
from agent.ppo_policy import ActionPredictor, ModelPolicy
from env.cluster_env import EnvConfig
from env.reward import RewardConfig
from env.scenario import ScenarioConfig
from env.summary import RunSummary, summarize


@dataclass
class ValidationResult:
    """Mean figures over validation episodes."""

    tokens_per_usd: float
    shortfall: float
    """Sum over tenants of max(0, target + margin - attainment), averaged over episodes."""
    min_attainment: float

    def score(self, penalty: float) -> float:
        """Tokens per dollar (millions) minus the shortfall penalty: what early stopping maximises."""
        return self.tokens_per_usd / 1e6 - penalty * self.shortfall


def _validation_config(env_config: EnvConfig, horizon_s: float | None) -> EnvConfig:
    """The training environment's settings without its randomisation, over the validation horizon."""
    return EnvConfig(interval_s=env_config.interval_s, horizon_s=horizon_s or env_config.horizon_s,
                     action=env_config.action, observation=env_config.observation)


def _shortfall(summary: RunSummary, margin: float) -> float:
    return sum(max(0.0, row.target + margin - row.attainment) for row in summary.tenants
               if math.isfinite(row.attainment))


def run_model_episode(predict: ActionPredictor, scenario: ScenarioConfig, seed: int, env_config: EnvConfig,
                      reward: RewardConfig, horizon_s: float | None,
                      headroom: HeadroomSettings | None = None) -> RunSummary:
    """One greedy episode of a model (action indices, masked; in ``headroom`` mode when given).

    The model plays as a :class:`ModelPolicy`, the shipped bundle's decoder, through the evaluation loop.
    """
    policy = ModelPolicy(predict, env_config.action, headroom, name="validation")
    return run_policy_episode(policy, scenario, seed, env_config, reward, horizon_s)


def run_policy_episode(policy: Policy, scenario: ScenarioConfig, seed: int, env_config: EnvConfig,
                       reward: RewardConfig, horizon_s: float | None) -> RunSummary:
    """One episode of a non-learned policy, played as the evaluation harness plays it."""
    task = EpisodeTask(index=0, policy=PolicySpec(name=policy.name, kind="validation"), scenario=scenario,
                       seed=seed, env=_validation_config(env_config, horizon_s), reward=reward)
    return summarize(play(policy, task).snapshots, scenario.tenants)


def aggregate(summaries: Sequence[RunSummary], margin: float = 0.0) -> ValidationResult:
    """Mean tokens per dollar, mean shortfall (from each target + ``margin``) and worst attainment."""
    return ValidationResult(
        tokens_per_usd=float(np.mean([s.goodput_tokens_per_usd for s in summaries])),
        shortfall=float(np.mean([_shortfall(s, margin) for s in summaries])),
        min_attainment=float(np.nanmin([s.min_attainment for s in summaries])),
    )
