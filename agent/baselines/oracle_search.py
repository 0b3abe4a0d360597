"""The static oracle's configuration search: fixed configurations replayed on one simulated episode.

For each prefill count (ascending) it finds the smallest decode count whose run meets every tenant's
attainment target by binary search, assuming attainment grows with decode replicas, between the pool's
minimum and the most the GPU budget leaves, and no higher than the previous prefill count's answer (more
prefill capacity never needs more decode capacity). The scenario's initial configuration is always tried,
so the oracle is never worse than ``static``'s default when that meets the targets. With ``prune``, prefill
counts stop once even perfect goodput could not beat the best goodput per dollar found. An aggregated-only
cluster searches its one pool the same way; a mixed cluster keeps the aggregated pool at its initial count.
Trials are cached per process by (scenario name, scenario digest, seed, environment settings, trial
length, configuration).
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import numpy as np

from disaggpilot.agent.baselines.common import make_action
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_env import DisaggClusterEnv, EnvConfig
from disaggpilot.env.scenario import ScenarioConfig
from disaggpilot.env.summary import summarize

_CACHE: dict[tuple[object, ...], Evaluation[Any]] = {}
_CACHE_LIMIT = 4096


class Replayable(Protocol):
    """A plan a trial replays: targets for every control interval (hashable, so trials can be cached)."""

    def action_at(self, step: int) -> ClusterAction:
        """The targets of control interval ``step`` (0-based)."""
        ...

    def __hash__(self) -> int: ...


PlanT = TypeVar("PlanT", bound=Replayable)


@dataclass(frozen=True)
class Candidate:
    """One fixed configuration.

    Attributes:
        replicas: (role, replicas) per enabled pool, in a fixed order.
        budget: prefill token budget (tokens per iteration).
        cap: decode batch cap (sequences per replica).
    """

    replicas: tuple[tuple[str, int], ...]
    budget: int
    cap: int

    def action(self) -> ClusterAction:
        """The targets of this configuration."""
        return make_action(dict(self.replicas), self.budget, self.cap)

    def action_at(self, step: int) -> ClusterAction:
        """The same targets every interval."""
        return self.action()

    def gpus(self, tp: dict[str, int]) -> int:
        """GPUs the configuration bills (``tp`` per role)."""
        return sum(count * tp[role] for role, count in self.replicas)


@dataclass(frozen=True)
class Evaluation(Generic[PlanT]):
    """One trial's outcome. Attainments are fractions; a tenant with no judged request counts as 1.

    Attributes:
        candidate: the configuration (or schedule) replayed.
        attainment: per tenant, met / judged over the trial.
        meets_targets: every tenant reached its ``attainment_target``.
        min_attainment: the lowest tenant attainment.
        goodput_tokens: weighted goodput tokens of the trial (tokens).
        cost_usd: money billed over the trial (USD).
        tokens_per_usd: goodput tokens per dollar.
    """

    candidate: PlanT
    attainment: dict[str, float]
    meets_targets: bool
    min_attainment: float
    goodput_tokens: float
    cost_usd: float
    tokens_per_usd: float


@dataclass
class SearchResult:
    """The search's answer and every trial it ran, in order.

    Attributes:
        best: the chosen configuration's trial.
        evaluations: every configuration tried, once each, in order (cached trials included).
        world_digest: digest of the searched episode's (randomised) scenario.
        seed: the episode seed searched.
    """

    best: Evaluation[Candidate]
    evaluations: list[Evaluation[Candidate]] = field(default_factory=list)
    world_digest: str = ""
    seed: int = 0


def scenario_digest(scenario: ScenarioConfig) -> str:
    """A content digest of a scenario (its dataclass ``repr``)."""
    return hashlib.sha256(repr(scenario).encode()).hexdigest()[:16]


class Trials:
    """Runs fixed configurations (or any :class:`Replayable` plan) on one episode and keeps their evaluations.

    Args:
        scenario: the scenario given to the evaluated environment.
        seed: its reset seed.
        env_config: its settings.
        duration_s: trial length (seconds); None: the environment's horizon.
    """

    def __init__(self, scenario: ScenarioConfig, seed: int, env_config: EnvConfig, duration_s: float | None) -> None:
        self.env, self.seed = DisaggClusterEnv(scenario, config=env_config), seed
        self.env.reset(seed=seed)
        self.world = self.env.world
        interval = env_config.interval_s
        self.steps = max(1, math.ceil(min(duration_s or self.env.horizon_s, self.env.horizon_s) / interval - 1e-9))
        self.key = (scenario.name, scenario_digest(scenario), seed, repr(env_config), self.steps)
        self.log: list[Evaluation[Any]] = []
        self.runs = 0
        """Simulations this object ran (cached trials excluded)."""
        self.offered = self._offered_tokens(self.steps * interval)
        self.price = self.env.history[0].usd_per_gpu_hour

    def evaluate(self, candidate: PlanT) -> Evaluation[PlanT]:
        """Run (or recall) ``candidate`` on the episode."""
        key = (*self.key, candidate)
        if key not in _CACHE:
            if len(_CACHE) >= _CACHE_LIMIT:
                _CACHE.clear()
            _CACHE[key] = self._run(candidate)
            self.runs += 1
        if all(e.candidate != candidate for e in self.log):
            self.log.append(_CACHE[key])
        found: Evaluation[PlanT] = _CACHE[key]
        return found

    def upper_bound(self, gpus: int) -> float:
        """Goodput per dollar no configuration of ``gpus`` GPUs can beat (inf when unknown)."""
        cost = gpus * self.steps * self.env.config.interval_s * self.price / 3600.0
        return self.offered / cost if cost > 0 and math.isfinite(self.offered) else math.inf

    def _run(self, candidate: PlanT) -> Evaluation[PlanT]:
        self.env.reset(seed=self.seed)
        for step in range(self.steps):
            self.env.step_targets(candidate.action_at(step))
        summary = summarize(self.env.history, self.world.tenants)
        attainment = {r.tenant: 1.0 if math.isnan(r.attainment) else r.attainment for r in summary.tenants}
        meets = all(attainment[t.name] >= t.attainment_target for t in self.world.tenants)
        per_usd = summary.goodput_tokens_per_usd
        return Evaluation(candidate, attainment, meets, min(attainment.values()), summary.goodput_tokens,
                          summary.cost_usd, 0.0 if math.isnan(per_usd) else per_usd)

    def _offered_tokens(self, until_s: float) -> float:
        """Weighted tokens of the requests arriving before ``until_s``: the most goodput a trial can earn."""
        requests = getattr(self.env.backend, "requests", None)
        if requests is None:
            return math.inf
        specs = {t.name: t for t in self.world.tenants}
        arrived = requests.arrival_s < until_s
        total = 0.0
        for index, name in enumerate(requests.tenant_names):
            mine, spec = arrived & (requests.tenant == index), specs[name]
            tokens = (spec.prompt_token_weight * np.sum(requests.prompt_tokens[mine])
                      + spec.output_token_weight * np.sum(requests.output_tokens[mine]))
            total += spec.weight * float(tokens)
        return total


def smallest_meeting(evaluate: Callable[[int], Evaluation[Any]], low: int, high: int) -> int | None:
    """The smallest count in ``low..high`` whose trial meets targets, or None when ``high`` fails.

    Assumes meeting targets is monotone in the count. Tries ``high`` first (is anything feasible?), then
    gallops up from ``low`` (1, 2, 4, … times ``low``) and bisects the last step: about 2·log2 of the answer
    trials, few when the answer is small, as it usually is.
    """
    if not evaluate(high).meets_targets:
        return None
    below, probe = low - 1, low
    while probe < high and not evaluate(probe).meets_targets:
        below, probe = probe, min(high, 2 * probe)
    while probe - below > 1:
        middle = (below + probe) // 2
        below, probe = (below, middle) if evaluate(middle).meets_targets else (middle, probe)
    return probe


def best_of(evaluations: Sequence[Evaluation[PlanT]]) -> Evaluation[PlanT]:
    """Most goodput per dollar among trials meeting targets; else the highest minimum attainment."""
    feasible = [e for e in evaluations if e.meets_targets]
    if feasible:
        return max(feasible, key=lambda e: e.tokens_per_usd)
    return max(evaluations, key=lambda e: (e.min_attainment, e.tokens_per_usd))


def run_search(scenario: ScenarioConfig, seed: int, env_config: EnvConfig, duration_s: float | None,
               budgets: Sequence[int] | None, caps: Sequence[int] | None, prune: bool,
               trials: Trials | None = None) -> SearchResult:
    """Search fixed configurations of the episode (module docstring) and pick the best.

    Args:
        scenario: the scenario given to the evaluated environment.
        seed: its reset seed.
        env_config: its settings.
        duration_s: trial length (seconds); None: the horizon.
        budgets: prefill token budgets to try (tokens); None: the scenario's.
        caps: decode batch caps to try (sequences); None: the scenario's.
        prune: stop a sweep once its GPUs cannot beat the best found.
        trials: the episode's trials to run them in (its log gathers them); None: new ones.
    """
    trials = trials or Trials(scenario, seed, env_config, duration_s)
    cluster = trials.world.cluster
    prompt_pool = cluster.prefill if cluster.prefill.enabled else cluster.aggregated
    batch_pool = cluster.decode if cluster.decode.enabled else cluster.aggregated
    initial = {role: getattr(cluster, role).replicas for role in cluster.enabled_roles()}
    trials.evaluate(Candidate(tuple(initial.items()), prompt_pool.max_num_batched_tokens, batch_pool.max_num_seqs))
    for budget, cap in itertools.product(budgets or [prompt_pool.max_num_batched_tokens],
                                         caps or [batch_pool.max_num_seqs]):
        _sweep(trials, initial, int(budget), int(cap), prune)
    configurations = [e for e in trials.log if isinstance(e.candidate, Candidate)]
    return SearchResult(best_of(configurations), configurations, scenario_digest(trials.world), seed)


def _sweep(trials: Trials, initial: dict[str, int], budget: int, cap: int, prune: bool) -> None:
    """Outer pool ascending, smallest inner pool meeting targets for each (a staircase)."""
    cluster = trials.world.cluster
    outer, inner = ("prefill", "decode") if "prefill" in initial else (None, "aggregated")
    pool = getattr(cluster, inner)
    low, ceiling = max(1, pool.min_replicas), pool.max_replicas
    outer_counts = range(max(1, cluster.prefill.min_replicas), cluster.prefill.max_replicas + 1) if outer else [0]
    for count in outer_counts:
        layout = _Layout(trials, initial, {outer: count} if outer else {}, inner, budget, cap)
        high = min(ceiling, layout.most(prune))
        if high < low:
            break
        found = smallest_meeting(layout.evaluate, low, high)
        ceiling = found if found is not None else ceiling


class _Layout:
    """Configurations of one sweep step: the outer pool and the fixed pools set, the inner pool free."""

    def __init__(self, trials: Trials, initial: dict[str, int], outer: dict[str, int], inner: str, budget: int,
                 cap: int) -> None:
        self.trials, self.initial, self.inner, self.budget, self.cap = trials, initial, inner, budget, cap
        self.base = {**{r: c for r, c in initial.items() if r != inner}, **outer}
        self.tp = {role: getattr(trials.world.cluster, role).tp for role in initial}

    def candidate(self, count: int) -> Candidate:
        """The configuration with ``count`` replicas in the inner pool."""
        counts = {**self.base, self.inner: count}
        return Candidate(tuple((role, counts[role]) for role in self.initial), self.budget, self.cap)

    def evaluate(self, count: int) -> Evaluation[Candidate]:
        """The trial of :meth:`candidate` ``(count)``."""
        return self.trials.evaluate(self.candidate(count))

    def most(self, prune: bool) -> int:
        """The largest inner count the GPU budget allows and, with ``prune``, that could still beat the best
        feasible trial's goodput per dollar."""
        cluster, tp = self.trials.world.cluster, self.tp[self.inner]
        most = (cluster.gpu_budget - self.candidate(0).gpus(self.tp)) // tp
        feasible = [e.tokens_per_usd for e in self.trials.log if e.meets_targets]
        while prune and feasible and most >= 0 and \
                self.trials.upper_bound(self.candidate(most).gpus(self.tp)) < max(feasible) * (1 - 1e-9):
            most -= 1
        return most
