"""The dynamic oracle's search: the best schedule in hindsight that holds every tenant's target on one episode.

Candidates are replayed on the episode itself (scenario, seed, environment settings) by
:class:`agent.baselines.oracle_search.Trials`, the static oracle's machinery:

1. the static oracle's search (its pick is a candidate, so the result never earns less than it while holding);
2. a coarse grid of the feed-forward family (:mod:`agent.baselines.feed_forward`): prefill × decode
   utilisation levels × replica floors given as fractions of the static pick's counts;
3. a local refinement around the best: each utilisation ± a step, each floor ± 1 replica, the step halved
   when no neighbour improves, until it falls below ``min_refine_step`` or the simulations run out.

A candidate whose targets alone would cost more than the best feasible trial's goodput per dollar allows
(every offered token counted as goodput) is skipped unsimulated. The pick is the candidate with the most
goodput tokens per dollar among those where every tenant's episode attainment reaches its target; when none
does, the one with the highest minimum attainment, and the :class:`Schedule` says ``holds: false``.

Each episode's schedule is cached as a JSON file keyed by the scenario's content, the seed, the environment
settings that shape the episode and the search settings: :func:`dynamic_oracle_schedule` reads it back
without simulating (issue 20's teacher reads the same files).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

from disaggpilot.agent.baselines.feed_forward import FeedForwardFamily, FeedForwardParams, ScheduleCandidate
from disaggpilot.agent.baselines.oracle_search import (
    Candidate,
    Evaluation,
    Trials,
    best_of,
    run_search,
    scenario_digest,
)
from disaggpilot.agent.baselines.schedule import DynamicOracleSettings, Schedule
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.scenario import ScenarioConfig

log = logging.getLogger("disaggpilot.baselines.dynamic_oracle")


def cache_key(scenario: ScenarioConfig, seed: int, env_config: EnvConfig, settings: DynamicOracleSettings) -> str:
    """A digest of what determines an episode's schedule: scenario content, seed, episode-shaping environment
    settings (interval, horizon, action limits, randomisation; not the observation) and the search settings."""
    shaping = (env_config.interval_s, env_config.horizon_s, env_config.action, env_config.randomization)
    text = repr((scenario_digest(scenario), seed, shaping, settings.search_fields()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dynamic_oracle_schedule(scenario: ScenarioConfig, seed: int, env_config: EnvConfig | None = None,
                            settings: DynamicOracleSettings | None = None) -> Schedule:
    """The episode's best schedule: read from the cache when there, else searched (and cached).

    Args:
        scenario: the scenario given to ``DisaggClusterEnv`` (before randomisation).
        seed: the episode's reset seed.
        env_config: the environment settings (default ``EnvConfig()``).
        settings: the search and cache settings (default ``DynamicOracleSettings()``).
    """
    env_config, settings = env_config or EnvConfig(), settings or DynamicOracleSettings()
    key = cache_key(scenario, seed, env_config, settings)
    path = None if settings.cache_dir is None else Path(settings.cache_dir) / f"{scenario.name}__{seed}__{key}.json"
    cached = Schedule.load(path) if path is not None and path.exists() else None
    if cached is not None:
        return cached
    schedule = search_schedule(scenario, seed, env_config, settings, key)
    if path is not None:
        schedule.save(path)
    return schedule


def search_schedule(scenario: ScenarioConfig, seed: int, env_config: EnvConfig, settings: DynamicOracleSettings,
                    key: str = "") -> Schedule:
    """Search the episode (module docstring) and describe the pick as a :class:`Schedule`."""
    started = time.perf_counter()
    trials = Trials(scenario, seed, env_config, None)
    static = run_search(scenario, seed, env_config, None, None, None, True, trials) if settings.include_static else None
    search = _Search(trials, settings, static.best if static is not None else None)
    candidates: list[Evaluation[Any]] = [*([static.best] if static is not None else []), *search.run()]
    chosen = best_of(candidates)
    if not chosen.meets_targets:
        log.warning("dynamic_oracle: no schedule held every target on %s seed %d (best minimum attainment %.4f)",
                    scenario.name, seed, chosen.min_attainment)
    return Schedule.of(chosen, search.family, trials, key=key, simulations=trials.runs,
                       search_wall_s=time.perf_counter() - started,
                       static=static.best if static is not None else None)


def round_half_up(value: float) -> int:
    """The nearest integer, halves rounded up (``round`` rounds halves to even)."""
    return int(value + 0.5)


def _rank(evaluation: Evaluation[Any]) -> tuple[bool, float]:
    """Holding beats missing; then goodput per dollar when holding, the worst tenant's attainment when not."""
    held = evaluation.meets_targets
    return held, evaluation.tokens_per_usd if held else evaluation.min_attainment


class _Search:
    """The feed-forward family's coarse grid and local refinement on one episode's trials."""

    def __init__(self, trials: Trials, settings: DynamicOracleSettings, static: Evaluation[Candidate] | None) -> None:
        self.trials, self.settings, self.static = trials, settings, static
        cluster, interval = trials.world.cluster, trials.env.config.interval_s
        self.family: FeedForwardFamily | None = None
        if cluster.prefill.enabled and cluster.decode.enabled:
            budget, cap = cluster.prefill.max_num_batched_tokens, cluster.decode.max_num_seqs
            if static is not None:
                budget, cap = static.candidate.budget, static.candidate.cap
            requests = getattr(trials.env.backend, "requests", None)
            if requests is not None:
                self.family = FeedForwardFamily(trials.world, requests, trials.steps, interval, budget, cap)
        self.tried: set[ScheduleCandidate] = set()
        """Schedules this search replayed: its budget, counted the same whether or not a trial was cached."""
        self.best: Evaluation[ScheduleCandidate] | None = None

    def run(self) -> list[Evaluation[ScheduleCandidate]]:
        """The coarse grid, then the refinement; returns the best feed-forward trial (none without the family)."""
        if self.family is None:
            return []
        for params in self._grid():
            self._try(params)
        self._refine()
        return [self.best] if self.best is not None else []

    def _grid(self) -> list[FeedForwardParams]:
        s = self.settings
        counts = dict(self.static.candidate.replicas) if self.static is not None else \
            {role: getattr(self.trials.world.cluster, role).replicas for role in ("prefill", "decode")}
        floors = sorted({(round_half_up(f * counts["prefill"]), round_half_up(f * counts["decode"]))
                         for f in s.floor_fractions})
        return [FeedForwardParams(p, d, fp, fd) for fp, fd in floors
                for p in s.prefill_utilization_levels for d in s.decode_utilization_levels]

    def _refine(self) -> None:
        step = self.settings.refine_step
        while self.best is not None and step >= self.settings.min_refine_step - 1e-12 and not self._spent():
            assert self.best.candidate.params is not None
            before = self.best
            for params in self._neighbours(self.best.candidate.params, step):
                self._try(params)
            if self.best is before:
                step /= 2

    def _neighbours(self, at: FeedForwardParams, step: float) -> list[FeedForwardParams]:
        top = self.settings.max_utilization
        def level(value: float) -> float:
            return round(min(top, value), 6)
        moves = [dataclasses.replace(at, prefill_utilization=level(at.prefill_utilization + step)),
                 dataclasses.replace(at, decode_utilization=level(at.decode_utilization + step)),
                 dataclasses.replace(at, prefill_utilization=level(at.prefill_utilization - step)),
                 dataclasses.replace(at, decode_utilization=level(at.decode_utilization - step)),
                 dataclasses.replace(at, prefill_floor=at.prefill_floor + 1),
                 dataclasses.replace(at, decode_floor=at.decode_floor + 1),
                 dataclasses.replace(at, prefill_floor=at.prefill_floor - 1),
                 dataclasses.replace(at, decode_floor=at.decode_floor - 1)]
        return [m for m in moves if m != at and m.prefill_utilization > 0 and m.decode_utilization > 0
                and m.prefill_floor >= 0 and m.decode_floor >= 0]

    def _try(self, params: FeedForwardParams) -> None:
        """Simulate ``params``'s schedule unless the budget is spent or it cannot beat the best holding trial."""
        assert self.family is not None
        candidate = self.family.schedule(params)
        if candidate in self.tried or self._spent() or self._hopeless(candidate):
            return
        self.tried.add(candidate)
        evaluation = self.trials.evaluate(candidate)
        if self.best is None or _rank(evaluation) > _rank(self.best):
            # a cached trial may carry another member with equal targets: keep the params asked for
            self.best = dataclasses.replace(evaluation, candidate=candidate)

    def _spent(self) -> bool:
        return len(self.tried) >= self.settings.max_simulations

    def _hopeless(self, candidate: ScheduleCandidate) -> bool:
        """Whether even perfect goodput at the targets' own cost could not beat the best holding trial."""
        holding = [e.tokens_per_usd for e in self.trials.log if e.meets_targets]
        if not holding:
            return False
        price = self.trials.price
        cost = candidate.gpu_hours(self.trials.world, self.trials.env.config.interval_s) * price
        return cost > 0 and self.trials.offered / cost < max(holding) * (1 - 1e-9)
