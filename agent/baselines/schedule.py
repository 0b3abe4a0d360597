"""The dynamic oracle's settings and its answer for one episode, a :class:`Schedule` kept as JSON on disk."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from disaggpilot.agent.baselines.common import make_action
from disaggpilot.agent.baselines.feed_forward import ScheduleCandidate
from disaggpilot.agent.baselines.oracle_search import Candidate, Evaluation, scenario_digest
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.errors import require

if TYPE_CHECKING:
    from disaggpilot.agent.baselines.feed_forward import FeedForwardFamily
    from disaggpilot.agent.baselines.oracle_search import Trials

SCHEDULE_VERSION = 1
"""Layout version of the cached JSON files (a file of another version is searched again)."""


def _levels_ok(levels: list[float], top: float) -> bool:
    return len(levels) >= 1 and all(0 < float(v) <= top for v in levels)


@dataclass
class DynamicOracleSettings:
    """Settings of ``dynamic_oracle`` (``configs/policy/dynamic_oracle.yaml``)."""

    prefill_utilization_levels: list[float] = field(default_factory=lambda: [0.5, 0.7, 0.9])
    """Coarse grid: fractions of one prefill replica's profiled token rate to plan for (each in (0, max])."""
    decode_utilization_levels: list[float] = field(default_factory=lambda: [0.6, 0.8, 1.0])
    """Coarse grid: fractions of one decode replica's token rate at the TPOT target (each in (0, max])."""
    floor_fractions: list[float] = field(default_factory=lambda: [0.0, 0.6])
    """Coarse grid: replica floors as fractions of the static pick's counts (fractions in [0, 1])."""
    max_utilization: float = 1.0
    """Highest utilisation the refinement may reach (fraction, in (0, 1.5])."""
    refine_step: float = 0.1
    """First utilisation step of the local refinement (fraction); halved when no neighbour improves."""
    min_refine_step: float = 0.025
    """The refinement stops once its step falls below this (fraction)."""
    max_simulations: int = 40
    """Most feed-forward schedules simulated per episode (trials); the static search adds its own (~10-25)."""
    include_static: bool = True
    """Run the static oracle's search first and keep its pick as a candidate (then the result never earns
    less than ``static_oracle`` while holding)."""
    cache_dir: str | None = "outputs/cache/dynamic_oracle"
    """Directory of the per-episode schedule files (relative to the working directory); None: no cache."""
    seed: int | None = None
    """Episode seed for a search run inside ``reset`` when the harness did not call ``search`` (it replays
    ``context.scenario`` with ``EnvConfig(interval_s=context.interval_s)``); leave None under the harness."""

    def __post_init__(self) -> None:
        key = "agent.dynamic_oracle"
        require(0 < self.max_utilization <= 1.5, f"{key}.max_utilization", self.max_utilization,
                "use a utilisation in (0, 1.5]")
        for name in ("prefill_utilization_levels", "decode_utilization_levels"):
            levels = [float(v) for v in getattr(self, name)]
            require(_levels_ok(levels, self.max_utilization), f"{key}.{name}", levels,
                    f"give at least one utilisation in (0, max_utilization={self.max_utilization}]")
            setattr(self, name, levels)
        fractions = [float(v) for v in self.floor_fractions]
        require(len(fractions) >= 1 and all(0 <= v <= 1 for v in fractions), f"{key}.floor_fractions", fractions,
                "give at least one fraction in [0, 1] (0: the pools' minimum)")
        self.floor_fractions = fractions
        require(0 < self.min_refine_step <= self.refine_step < 1, f"{key}.refine_step",
                (self.refine_step, self.min_refine_step), "use 0 < min_refine_step <= refine_step < 1")
        require(self.max_simulations >= 0, f"{key}.max_simulations", self.max_simulations, "use >= 0 trials")

    def search_fields(self) -> dict[str, Any]:
        """The settings that change the searched schedule (not where it is cached, nor the reset seed)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("cache_dir", "seed")}


@dataclass
class Schedule:
    """An episode's chosen schedule and how it did when replayed on that episode (a JSON file in the cache).

    Attributes:
        scenario: the scenario's name.
        seed: the episode seed.
        key: the cache key (:func:`agent.baselines.oracle_schedule.cache_key`).
        world_digest: digest of the episode's randomised scenario (checked when the policy resets).
        family: ``feed_forward`` or ``static`` (the static oracle's pick won).
        params: the family member: utilisations (fractions) and floors (replicas), or the static counts.
        interval_s: the control interval (seconds).
        targets: per interval, ``prefill``, ``decode`` (replicas), ``max_num_batched_tokens`` (tokens) and
            ``max_num_seqs`` (sequences).
        demand: per interval, the true ``prefill_tokens_per_s`` and ``decode_tokens_per_s`` (tokens/s).
        holds: every tenant's episode attainment reached its target.
        attainment: per tenant, episode attainment (fraction).
        min_attainment: the lowest tenant attainment (fraction).
        tokens_per_usd: goodput tokens per dollar over the episode.
        cost_usd: the episode's cost (USD).
        goodput_tokens: weighted goodput tokens (tokens).
        static_tokens_per_usd: the static oracle's pick's goodput per dollar (None without the static search).
        static_holds: whether the static pick held every target (None without the static search).
        simulations: episodes simulated by the search (static search included; cached trials excluded).
        search_wall_s: the search's wall time (seconds).
        version: the file layout's version.
    """

    scenario: str
    seed: int
    key: str
    world_digest: str
    family: str
    params: dict[str, float]
    interval_s: float
    targets: list[dict[str, int]]
    demand: dict[str, list[float]]
    holds: bool
    attainment: dict[str, float]
    min_attainment: float
    tokens_per_usd: float
    cost_usd: float
    goodput_tokens: float
    static_tokens_per_usd: float | None
    static_holds: bool | None
    simulations: int
    search_wall_s: float
    version: int = SCHEDULE_VERSION

    def action_at(self, step: int) -> ClusterAction:
        """The targets of interval ``step``; the last interval's beyond the schedule's end."""
        target = self.targets[min(step, len(self.targets) - 1)]
        return make_action({"prefill": target["prefill"], "decode": target["decode"]},
                           target["max_num_batched_tokens"], target["max_num_seqs"])

    def save(self, path: Path) -> Path:
        """Write the schedule as JSON (directories created); returns ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))
        return path

    @classmethod
    def load(cls, path: Path) -> Schedule | None:
        """Read a schedule written by :meth:`save`; None when the file is of another layout or unreadable."""
        try:
            raw = json.loads(path.read_text())
            schedule = cls(**raw) if isinstance(raw, dict) else None
        except (OSError, ValueError, TypeError):
            return None
        return schedule if schedule is not None and schedule.version == SCHEDULE_VERSION else None

    @classmethod
    def of(cls, chosen: Evaluation[Any], family: FeedForwardFamily | None, trials: Trials, *, key: str,
           simulations: int, search_wall_s: float, static: Evaluation[Candidate] | None) -> Schedule:
        """Describe the trial ``chosen`` (a :class:`ScheduleCandidate` or a static :class:`Candidate`)."""
        steps, candidate = trials.steps, chosen.candidate
        if isinstance(candidate, ScheduleCandidate):
            params = dataclasses.asdict(candidate.params) if candidate.params is not None else {}
            family_name, pairs = "feed_forward", list(candidate.targets)
            budget, cap = candidate.budget, candidate.cap
        else:
            counts = dict(candidate.replicas)
            params = {f"{role}_replicas": count for role, count in candidate.replicas}
            family_name, pairs = "static", [(counts.get("prefill", 0), counts.get("decode", 0))] * steps
            budget, cap = candidate.budget, candidate.cap
        demand = {"prefill_tokens_per_s": [], "decode_tokens_per_s": []} if family is None else {
            "prefill_tokens_per_s": [round(float(v), 3) for v in family.demand.prefill_tokens_per_s],
            "decode_tokens_per_s": [round(float(v), 3) for v in family.demand.decode_tokens_per_s]}
        return cls(scenario=trials.world.name, seed=trials.seed, key=key, world_digest=scenario_digest(trials.world),
                   family=family_name, params=params, interval_s=trials.env.config.interval_s,
                   targets=[{"prefill": p, "decode": d, "max_num_batched_tokens": budget, "max_num_seqs": cap}
                            for p, d in pairs],
                   demand=demand, holds=chosen.meets_targets, attainment=dict(chosen.attainment),
                   min_attainment=chosen.min_attainment, tokens_per_usd=chosen.tokens_per_usd,
                   cost_usd=chosen.cost_usd, goodput_tokens=chosen.goodput_tokens,
                   static_tokens_per_usd=None if static is None else static.tokens_per_usd,
                   static_holds=None if static is None else static.meets_targets,
                   simulations=simulations, search_wall_s=round(search_wall_s, 3))
