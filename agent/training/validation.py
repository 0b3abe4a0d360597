"""Validation during training: greedy episodes of the current policy, judged per scenario, pooled over seeds.

A tenant *holds* on a scenario when the one-sided Wilson score lower bound on its attainment, over its judged
requests pooled over the validation seeds, clears its target: a point estimate a hair above target on a few
episodes is not enough, and one a hair below it on a few thousand requests is not a veto unless the bound says
the tenant is really short. Each scenario is judged on its own. A model replaces the best so far when it holds
on every scenario and earns more: the geometric mean over scenarios of its pooled tokens per dollar (total
goodput / total cost over the seeds) divided by the best's is above 1, so an 8 % gain on one scenario is not
cancelled by noise on another, and no scenario's scale dominates. Before any model holds everywhere, the one
nearest to holding (smallest summed bound shortfall) is kept.

Requests within an episode are not independent (a burst misses many at once), so the bound is optimistic; more
seeds (``run.validation_seeds``, five by default) make it honest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

from disaggpilot.agent.evaluation.episode import EpisodeTask, play
from disaggpilot.agent.evaluation.policies import PolicySpec
from disaggpilot.agent.headroom import HeadroomSettings
from disaggpilot.agent.policy import Policy
from disaggpilot.agent.ppo_policy import ActionPredictor, ModelPolicy
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.metrics import GW_MET, GW_MISSED
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.summary import summarize


def wilson_lower_bound(successes: float, trials: float, confidence: float) -> float:
    """The one-sided Wilson score lower bound on a proportion (Wilson 1927): with ``z`` the standard normal's
    ``confidence`` quantile and ``p = successes / trials``,
    ``(p + z^2/2n - z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)``; 1.0 with no trials (nothing to judge)."""
    if trials <= 0:
        return 1.0
    z = NormalDist().inv_cdf(confidence)
    p, n = successes / trials, trials
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(max(p * (1 - p) / n + z * z / (4 * n * n), 0.0))
    return max(0.0, (centre - spread) / (1 + z * z / n))


@dataclass
class ScenarioValidation:
    """One scenario's validation episodes, pooled over seeds."""

    scenario: str
    goodput_tokens: float
    """Weighted goodput over every episode (tokens)."""
    cost_usd: float
    """Cost over every episode (USD)."""
    targets: dict[str, float]
    """Each tenant's attainment target."""
    met: dict[str, float] = field(default_factory=dict)
    """Requests that met the SLO, per tenant, over every episode."""
    judged: dict[str, float] = field(default_factory=dict)
    """Requests judged (met or missed), per tenant, over every episode."""

    @property
    def tokens_per_usd(self) -> float:
        """Pooled goodput tokens per dollar."""
        return self.goodput_tokens / self.cost_usd if self.cost_usd > 0 else 0.0

    def lower_bounds(self, confidence: float) -> dict[str, float]:
        """Each tenant's Wilson lower bound on its pooled attainment."""
        return {t: wilson_lower_bound(self.met.get(t, 0.0), self.judged.get(t, 0.0), confidence) for t in self.targets}

    def shortfall(self, confidence: float) -> float:
        """Sum over tenants of how far the lower bound falls short of the target (0 when the scenario holds)."""
        return sum(max(0.0, self.targets[t] - bound) for t, bound in self.lower_bounds(confidence).items())

    def min_attainment(self) -> float:
        """The lowest pooled attainment of any tenant (NaN when nothing was judged)."""
        values = [self.met[t] / self.judged[t] for t in self.targets if self.judged.get(t, 0.0) > 0]
        return min(values) if values else math.nan


@dataclass
class ValidationResult:
    """A validation: every scenario's pooled figures, judged at ``confidence``."""

    scenarios: list[ScenarioValidation]
    confidence: float = 0.9
    """Confidence of the one-sided lower bounds (``run.validation_confidence``)."""

    @property
    def tokens_per_usd(self) -> float:
        """Goodput tokens per dollar over every scenario and seed (for logs; decisions use each scenario's)."""
        cost = sum(s.cost_usd for s in self.scenarios)
        return sum(s.goodput_tokens for s in self.scenarios) / cost if cost > 0 else 0.0

    @property
    def shortfall(self) -> float:
        """Summed lower-bound shortfall over scenarios and tenants: 0 exactly when the model holds everywhere."""
        return sum(s.shortfall(self.confidence) for s in self.scenarios)

    @property
    def min_attainment(self) -> float:
        """The lowest pooled attainment of any tenant on any scenario."""
        values = [s.min_attainment() for s in self.scenarios]
        finite = [v for v in values if math.isfinite(v)]
        return min(finite) if finite else math.nan

    @property
    def holds(self) -> bool:
        """Whether every tenant's lower bound clears its target on every scenario."""
        return self.shortfall <= 0.0

    def score(self) -> float:
        """One number for logs and sweeps: pooled tokens per dollar (millions) when the model holds, else
        -1 minus its shortfall (any model that holds scores above any that does not)."""
        return self.tokens_per_usd / 1e6 if self.holds else -1.0 - self.shortfall

    def better_than(self, best: ValidationResult | None) -> bool:
        """Whether this model should replace ``best`` (the module docstring gives the rule)."""
        if best is None:
            return True
        if self.holds != best.holds:
            return self.holds
        if not self.holds:
            return self.shortfall < best.shortfall
        return gain_over(self, best) > 1.0


def gain_over(result: ValidationResult, reference: ValidationResult) -> float:
    """Geometric mean over the scenarios both ran of ``result``'s pooled tokens per dollar / ``reference``'s."""
    theirs = {s.scenario: s.tokens_per_usd for s in reference.scenarios}
    ratios = [s.tokens_per_usd / theirs[s.scenario] for s in result.scenarios
              if theirs.get(s.scenario, 0.0) > 0 and s.tokens_per_usd > 0]
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios else 0.0


@dataclass
class EpisodeFigures:
    """What validation keeps of one episode: goodput, cost and each tenant's met and judged requests."""

    scenario: ScenarioConfig
    goodput_tokens: float
    cost_usd: float
    met: dict[str, float]
    judged: dict[str, float]

    @property
    def goodput_tokens_per_usd(self) -> float:
        """The episode's goodput tokens per dollar."""
        return self.goodput_tokens / self.cost_usd if self.cost_usd > 0 else 0.0


def _validation_config(env_config: EnvConfig, horizon_s: float | None) -> EnvConfig:
    """The training environment's settings without its randomisation, over the validation horizon."""
    return EnvConfig(interval_s=env_config.interval_s, horizon_s=horizon_s or env_config.horizon_s,
                     action=env_config.action, observation=env_config.observation)


def run_model_episode(predict: ActionPredictor, scenario: ScenarioConfig, seed: int, env_config: EnvConfig,
                      reward: RewardConfig, horizon_s: float | None,
                      headroom: HeadroomSettings | None = None) -> EpisodeFigures:
    """One greedy episode of a model (action indices, masked; in ``headroom`` mode when given).

    The model plays as a :class:`ModelPolicy`, the shipped bundle's decoder, through the evaluation loop.
    """
    policy = ModelPolicy(predict, env_config.action, headroom, name="validation")
    return run_policy_episode(policy, scenario, seed, env_config, reward, horizon_s)


def run_policy_episode(policy: Policy, scenario: ScenarioConfig, seed: int, env_config: EnvConfig,
                       reward: RewardConfig, horizon_s: float | None) -> EpisodeFigures:
    """One episode of a non-learned policy, played as the evaluation harness plays it."""
    task = EpisodeTask(index=0, policy=PolicySpec(name=policy.name, kind="validation"), scenario=scenario,
                       seed=seed, env=_validation_config(env_config, horizon_s), reward=reward)
    snapshots = play(policy, task).snapshots
    summary = summarize(snapshots, scenario.tenants)
    met = {t.name: sum(s.tenants[t.name].counters[GW_MET] for s in snapshots if t.name in s.tenants)
           for t in scenario.tenants}
    missed = {t.name: sum(s.tenants[t.name].counters[GW_MISSED] for s in snapshots if t.name in s.tenants)
              for t in scenario.tenants}
    return EpisodeFigures(scenario, summary.goodput_tokens, summary.cost_usd, met,
                          {name: met[name] + missed[name] for name in met})


def aggregate(episodes: Sequence[EpisodeFigures], confidence: float = 0.9) -> ValidationResult:
    """Pool episodes by scenario (in first-seen order) into a :class:`ValidationResult`."""
    pooled: dict[str, ScenarioValidation] = {}
    for episode in episodes:
        name = episode.scenario.name
        row = pooled.setdefault(name, ScenarioValidation(
            name, 0.0, 0.0, {t.name: t.attainment_target for t in episode.scenario.tenants}))
        row.goodput_tokens += episode.goodput_tokens
        row.cost_usd += episode.cost_usd
        for tenant in row.targets:
            row.met[tenant] = row.met.get(tenant, 0.0) + episode.met.get(tenant, 0.0)
            row.judged[tenant] = row.judged.get(tenant, 0.0) + episode.judged.get(tenant, 0.0)
    return ValidationResult(list(pooled.values()), confidence)
