"""``static_oracle``: the best fixed configuration for an episode, found in hindsight on the simulator.

The DistServe/Vidur-style configuration search: replay the *same* episode (scenario, seed, environment
settings) on the simulator under fixed prefill × decode replica counts (and, optionally, a few knob
levels), and keep the configuration with the most goodput tokens per dollar among those where every
tenant's attainment reaches its target; when none does, the one with the highest minimum attainment.

The harness calls :meth:`StaticOraclePolicy.search` with the episode's scenario, seed and ``EnvConfig``
before :meth:`~StaticOraclePolicy.reset` (see the class docstring). The search itself lives in
:mod:`agent.baselines.oracle_search`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from disaggpilot.agent.baselines.common import BaselineError, build_settings
from disaggpilot.agent.baselines.oracle_search import SearchResult, run_search, scenario_digest
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.errors import require
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.scenario import ScenarioConfig, load_scenario


@dataclass
class StaticOracleSettings:
    """Settings of :class:`StaticOraclePolicy` (``configs/agent/static_oracle.yaml``)."""

    search_duration_s: float | None = None
    """Simulated time of each trial (seconds), cut from the episode's start for speed; None: the horizon."""
    token_budget_levels: list[int] | None = None
    """Prefill token budgets to try (tokens per iteration); None: only the scenario's."""
    batch_cap_levels: list[int] | None = None
    """Decode batch caps to try (sequences per replica); None: only the scenario's."""
    prune: bool = True
    """Skip configurations whose GPUs cannot beat the best goodput per dollar found (an upper bound that
    assumes every offered token is goodput and the configuration is billed for the whole trial)."""
    seed: int | None = None
    """Episode seed for a search run inside ``reset`` when the harness did not call ``search``; it replays
    ``context.scenario`` (already randomised) with ``EnvConfig(interval_s=context.interval_s)``."""

    def __post_init__(self) -> None:
        check_search_settings(self, "agent.static_oracle")


def check_search_settings(settings: Any, key: str) -> None:
    """Validate the static search's trial length and knob levels, which ``static_tuned`` shares.

    Args:
        settings: an object with ``search_duration_s``, ``token_budget_levels`` and ``batch_cap_levels``.
        key: the config prefix errors name (e.g. ``agent.static_oracle``).
    """
    require(settings.search_duration_s is None or settings.search_duration_s > 0, f"{key}.search_duration_s",
            settings.search_duration_s, "use a positive duration in seconds, or null for the whole episode")
    for name in ("token_budget_levels", "batch_cap_levels"):
        levels = getattr(settings, name)
        require(levels is None or (len(levels) >= 1 and all(int(v) >= 1 for v in levels)), f"{key}.{name}",
                levels, "give positive levels, or null for the scenario's setting")


class StaticOraclePolicy:
    """Hold the configuration the hindsight search found best for this episode. **Sees the future.**

    The harness must let it search the same episode it is evaluated on::

        oracle = make_baseline("static_oracle", search_duration_s=1800)
        obs, info = env.reset(seed=seed)
        oracle.search(scenario, seed, env.config)         # the scenario given to DisaggClusterEnv
        oracle.reset(PolicyContext(env.world, env.config.interval_s))

    ``search`` builds its own ``DisaggClusterEnv(scenario, config=env_config)`` and replays ``reset(seed=seed)``
    for each trial, so the world (randomisation) and the requests are the evaluated episode's. ``reset``
    checks that ``context.scenario`` is the searched world and raises :class:`BaselineError` otherwise, or
    when no search ran (unless ``seed`` is set in the settings, which searches inside ``reset``).

    Args:
        **params: fields of :class:`StaticOracleSettings`.
    """

    name = "static_oracle"
    sees_future: ClassVar[bool] = True
    """It searches the episode it is judged on: tables mark it as a reference no controller can reach."""

    def __init__(self, **params: Any) -> None:
        self.settings = build_settings(StaticOracleSettings, params, self.name)
        self.result: SearchResult | None = None
        self._action: ClusterAction | None = None

    def search(self, scenario: ScenarioConfig | str, seed: int, env_config: EnvConfig | None = None) -> SearchResult:
        """Find the best fixed configuration for the episode ``DisaggClusterEnv(scenario, env_config)`` with
        ``reset(seed=seed)``; results are cached per (scenario, seed, settings).

        Args:
            scenario: the scenario the evaluated environment was built with (or its name).
            seed: the seed the evaluated environment is reset with.
            env_config: the evaluated environment's settings (interval, horizon, randomisation).
        """
        s = self.settings
        self.result = run_search(scenario if isinstance(scenario, ScenarioConfig) else load_scenario(scenario),
                                 seed, env_config or EnvConfig(), s.search_duration_s, s.token_budget_levels,
                                 s.batch_cap_levels, s.prune)
        return self.result

    def reset(self, context: PolicyContext) -> None:
        """Adopt the searched configuration for the episode of ``context``."""
        digest = scenario_digest(context.scenario)
        if self.result is None and self.settings.seed is not None:
            self.search(context.scenario, self.settings.seed, EnvConfig(interval_s=context.interval_s))
        if self.result is None:
            raise BaselineError("static_oracle: call search(scenario, seed, env_config) for the episode before "
                                "reset(context), or set the `seed` setting")
        if self.result.world_digest != digest:
            raise BaselineError("static_oracle: the last search was for another episode's scenario; call "
                                "search(scenario, seed, env_config) with this episode's scenario and seed")
        self._action = self.result.best.candidate.action()

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """The searched configuration, every interval."""
        if self._action is None:
            raise BaselineError(f"{self.name}: call search(...) and reset(context) before act()")
        return self._action

