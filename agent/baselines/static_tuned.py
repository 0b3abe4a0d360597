"""``static_tuned``: the fixed configuration a user would pick by simulating their workload once.

``static_oracle``'s configuration search (:mod:`agent.baselines.oracle_search`) runs on *calibration* seeds
of the scenario (default: seed 0), never on the evaluated episode, and the configuration it picks is replayed
unchanged on every evaluation seed. It is the bar a controller must beat: "simulate your workload once, pick
a configuration, leave it".

With several calibration seeds, the search runs on each; every configuration any of them tried is then
replayed on all of them, and the pick is the configuration with the most goodput tokens per dollar pooled over
the calibration seeds (total goodput / total cost) among those that hold every tenant's target on *every*
calibration seed. For fixed configurations of equal length the cost follows the GPU count, so this is the
cheapest configuration that holds everywhere, ties going to the one with more goodput; with one seed it is
exactly ``static_oracle``'s pick on that seed. When no configuration holds on all seeds, the one with the
highest worst-seed minimum attainment is kept.

The pick is cached in a file per (scenario content, calibration seeds, search settings, environment settings)
under ``cache_dir``, so an evaluation's worker processes search once per scenario, not once per episode; a
lock file makes a second worker wait for the first one's answer instead of searching again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from disaggpilot.agent.baselines.common import BaselineError, build_settings
from disaggpilot.agent.baselines.oracle_search import Candidate, Evaluation, Trials, run_search, scenario_digest
from disaggpilot.agent.baselines.static_oracle import check_search_settings
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import require
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.reward import RewardConfig
from disaggpilot.env.scenario import ScenarioConfig

CACHE_VERSION = 1
"""Bumped when the cached file's layout or the pick's rule changes, so stale picks are not reused."""


@dataclass
class StaticTunedSettings:
    """Settings of :class:`StaticTunedPolicy` (``configs/policy/static_tuned.yaml``)."""

    calibration_seeds: list[int] = field(default_factory=lambda: [0])
    """Episode seeds the configuration search runs on (seeds >= 0); keep them apart from evaluation seeds."""
    search_duration_s: float | None = None
    """Simulated time of each trial (seconds), cut from the episode's start; None: the horizon."""
    token_budget_levels: list[int] | None = None
    """Prefill token budgets to try (tokens per iteration); None: only the scenario's."""
    batch_cap_levels: list[int] | None = None
    """Decode batch caps to try (sequences per replica); None: only the scenario's."""
    prune: bool = True
    """Skip configurations whose GPUs cannot beat the best goodput per dollar found (as ``static_oracle``)."""
    cache_dir: str | None = "outputs/cache/static_tuned"
    """Directory of the pick cache (a path, relative to the working directory); None searches every time."""

    def __post_init__(self) -> None:
        key = "agent.static_tuned"
        seeds = list(self.calibration_seeds)
        valid = all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)
        require(len(seeds) >= 1 and valid and len(set(seeds)) == len(seeds), f"{key}.calibration_seeds", seeds,
                "list distinct integer seeds >= 0, e.g. [0]")
        self.calibration_seeds = sorted(seeds)
        check_search_settings(self, key)

    def search_key(self) -> dict[str, Any]:
        """The settings the pick depends on (not where it is cached)."""
        return {name: value for name, value in asdict(self).items() if name != "cache_dir"}


@dataclass(frozen=True)
class Calibration:
    """The configuration picked on the calibration seeds and how it did there.

    Attributes:
        candidate: the fixed configuration replayed on every evaluation seed.
        seeds: the calibration seeds.
        holds_targets: it held every tenant's target on every calibration seed.
        min_attainment: the lowest tenant attainment over the calibration seeds (fraction).
        tokens_per_usd: goodput tokens per dollar pooled over the calibration seeds.
    """

    candidate: Candidate
    seeds: tuple[int, ...]
    holds_targets: bool
    min_attainment: float
    tokens_per_usd: float


def pick(per_seed: dict[int, dict[Candidate, Evaluation]]) -> Calibration:
    """The configuration to replay (module docstring) from every candidate's trial on every calibration seed.

    Args:
        per_seed: calibration seed → candidate → its trial on that seed; every seed has the same candidates.
    """
    seeds = tuple(sorted(per_seed))
    scored = [_score(candidate, [per_seed[s][candidate] for s in seeds], seeds) for candidate in per_seed[seeds[0]]]
    holding = [c for c in scored if c.holds_targets]
    if holding:
        return max(holding, key=lambda c: c.tokens_per_usd)
    return max(scored, key=lambda c: (c.min_attainment, c.tokens_per_usd))


def _score(candidate: Candidate, trials: Sequence[Evaluation], seeds: tuple[int, ...]) -> Calibration:
    cost = sum(t.cost_usd for t in trials)
    per_usd = sum(t.goodput_tokens for t in trials) / cost if cost > 0 else 0.0
    return Calibration(candidate, seeds, all(t.meets_targets for t in trials), min(t.min_attainment for t in trials),
                       per_usd)


def calibrate(scenario: ScenarioConfig, env_config: EnvConfig, settings: StaticTunedSettings) -> Calibration:
    """Search each calibration seed, replay the union of tried configurations on every seed, and pick."""
    s = settings
    tried: list[Candidate] = []
    for seed in s.calibration_seeds:
        result = run_search(scenario, seed, env_config, s.search_duration_s, s.token_budget_levels,
                            s.batch_cap_levels, s.prune)
        tried += [e.candidate for e in result.evaluations if e.candidate not in tried]
    per_seed: dict[int, dict[Candidate, Evaluation]] = {}
    for seed in s.calibration_seeds:
        trials = Trials(scenario, seed, env_config, s.search_duration_s)
        per_seed[seed] = {candidate: trials.evaluate(candidate) for candidate in tried}
    return pick(per_seed)


def cache_key(scenario: ScenarioConfig, env_config: EnvConfig, settings: StaticTunedSettings) -> str:
    """A digest of everything the pick depends on: scenario content, environment and search settings."""
    text = json.dumps({"version": CACHE_VERSION, "scenario": scenario_digest(scenario), "env": repr(env_config),
                       "search": settings.search_key()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _to_json(calibration: Calibration) -> dict[str, Any]:
    c = calibration.candidate
    return {"replicas": [list(pair) for pair in c.replicas], "budget": c.budget, "cap": c.cap,
            "seeds": list(calibration.seeds), "holds_targets": calibration.holds_targets,
            "min_attainment": calibration.min_attainment, "tokens_per_usd": calibration.tokens_per_usd}


def _from_json(data: dict[str, Any]) -> Calibration:
    candidate = Candidate(tuple((str(role), int(count)) for role, count in data["replicas"]), int(data["budget"]),
                          int(data["cap"]))
    return Calibration(candidate, tuple(int(s) for s in data["seeds"]), bool(data["holds_targets"]),
                       float(data["min_attainment"]), float(data["tokens_per_usd"]))


def cached_calibration(scenario: ScenarioConfig, env_config: EnvConfig, settings: StaticTunedSettings) -> Calibration:
    """:func:`calibrate`, read from (or written to) ``settings.cache_dir`` when it is set."""
    if settings.cache_dir is None:
        return calibrate(scenario, env_config, settings)
    folder = Path(settings.cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{scenario.name}-{cache_key(scenario, env_config, settings)}.json"
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here, then reads the first one's pick
        if path.exists():
            return _from_json(json.loads(path.read_text()))
        calibration = calibrate(scenario, env_config, settings)
        staged = path.with_suffix(f".{os.getpid()}.tmp")
        staged.write_text(json.dumps(_to_json(calibration), indent=1))
        os.replace(staged, path)
        return calibration


class StaticTunedPolicy:
    """Hold the configuration the search picked on the calibration seeds, on every episode.

    The harness's ``prepare(scenario, seed, env_config, reward_config)`` hook hands it the scenario and
    environment settings; it discards the evaluation ``seed`` and searches (or recalls) the calibration seeds
    only. Outside the harness, call :meth:`calibrate` before ``reset``.

    Args:
        **params: fields of :class:`StaticTunedSettings`.
    """

    name = "static_tuned"

    def __init__(self, **params: Any) -> None:
        self.settings = build_settings(StaticTunedSettings, params, self.name)
        self.calibration: Calibration | None = None
        self._action: ClusterAction | None = None

    def prepare(self, scenario: ScenarioConfig, seed: int, env_config: EnvConfig,
                reward_config: RewardConfig | None = None) -> Calibration:
        """The harness's hook: calibrate on the scenario; the evaluation ``seed`` is deliberately unused."""
        del seed, reward_config  # the evaluated episode must not inform the configuration
        return self.calibrate(scenario, env_config)

    def calibrate(self, scenario: ScenarioConfig, env_config: EnvConfig | None = None) -> Calibration:
        """Pick the configuration on the calibration seeds of ``scenario`` (the scenario before randomisation)."""
        self.calibration = cached_calibration(scenario, env_config or EnvConfig(), self.settings)
        return self.calibration

    def reset(self, context: PolicyContext) -> None:
        """Adopt the calibrated configuration."""
        if self.calibration is None:
            raise BaselineError("static_tuned: call calibrate(scenario, env_config) (the harness's prepare hook "
                                "does) before reset(context)")
        if self.calibration.candidate.replicas[0][0] not in context.scenario.cluster.enabled_roles():
            raise BaselineError("static_tuned: the calibrated configuration is for another cluster's pools")
        self._action = self.calibration.candidate.action()

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """The calibrated configuration, every interval."""
        if self._action is None:
            raise BaselineError(f"{self.name}: call calibrate(...) and reset(context) before act()")
        return self._action
