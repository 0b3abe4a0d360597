"""``dynamic_oracle``: the best replica *schedule* in hindsight that holds every tenant's target on the episode.

It sees the future: before the episode it searches the very episode it is judged on (the same scenario,
seed and environment settings) on the simulator, reading the episode's true requests (see
:mod:`agent.baselines.oracle_schedule`), then replays the chosen per-interval targets. No controller can
do that; it is the upper reference, and the teacher of issue 20's behaviour cloning
(:func:`agent.baselines.oracle_schedule.dynamic_oracle_schedule` returns the cached schedule).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from disaggpilot.agent.baselines.common import BaselineError, build_settings
from disaggpilot.agent.baselines.oracle_schedule import dynamic_oracle_schedule
from disaggpilot.agent.baselines.oracle_search import scenario_digest
from disaggpilot.agent.baselines.schedule import DynamicOracleSettings, Schedule
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.cluster_env import EnvConfig
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.scenario import ScenarioConfig, load_scenario

log = logging.getLogger("disaggpilot.baselines.dynamic_oracle")


class DynamicOraclePolicy:
    """Replay the schedule the hindsight search found best for this episode. **Sees the future.**

    The harness lets it search the episode before ``reset``, as it does ``static_oracle``::

        oracle = make_baseline("dynamic_oracle")
        oracle.search(scenario, seed, env.config)          # the scenario given to DisaggClusterEnv
        obs, info = env.reset(seed=seed)
        oracle.reset(PolicyContext(env.world, env.config.interval_s))

    ``reset`` checks that ``context.scenario`` is the searched episode's world. When no schedule held every
    target, :meth:`episode_notes` says so in the episode's results row (``oracle_holds`` false and an
    ``oracle_note``), and a warning is logged: a missing schedule is never reported as a hold.

    Args:
        **params: fields of :class:`DynamicOracleSettings`.
    """

    name = "dynamic_oracle"
    sees_future: ClassVar[bool] = True
    """It reads the episode it is judged on: tables mark it as a reference no controller can reach."""

    def __init__(self, **params: Any) -> None:
        self.settings = build_settings(DynamicOracleSettings, params, self.name)
        self.schedule: Schedule | None = None
        self._active: Schedule | None = None

    def search(self, scenario: ScenarioConfig | str, seed: int, env_config: EnvConfig | None = None) -> Schedule:
        """Find (or read from the cache) the best schedule for ``DisaggClusterEnv(scenario, env_config)`` reset
        with ``seed``."""
        world = scenario if isinstance(scenario, ScenarioConfig) else load_scenario(scenario)
        self.schedule = dynamic_oracle_schedule(world, seed, env_config or EnvConfig(), self.settings)
        return self.schedule

    def reset(self, context: PolicyContext) -> None:
        """Adopt the searched schedule for the episode of ``context``."""
        if self.schedule is None and self.settings.seed is not None:
            self.search(context.scenario, self.settings.seed, EnvConfig(interval_s=context.interval_s))
        if self.schedule is None:
            raise BaselineError("dynamic_oracle: call search(scenario, seed, env_config) for the episode before "
                                "reset(context), or set the `seed` setting")
        if self.schedule.world_digest != scenario_digest(context.scenario):
            raise BaselineError("dynamic_oracle: the last search was for another episode's scenario; call "
                                "search(scenario, seed, env_config) with this episode's scenario and seed")
        if not self.schedule.holds:
            log.warning("dynamic_oracle: no searched schedule holds every target on %s seed %d; replaying the "
                        "best-attaining one", self.schedule.scenario, self.schedule.seed)
        self._active = self.schedule

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """The schedule's targets for the interval that starts now (``history`` holds the reset snapshot and
        one snapshot per interval played)."""
        if self._active is None:
            raise BaselineError(f"{self.name}: call search(...) and reset(context) before act()")
        return self._active.action_at(len(history) - 1)

    def episode_notes(self) -> dict[str, Any]:
        """Columns for the episode's results row: whether the searched schedule held, which family won, and
        what the search cost."""
        schedule = self._active
        if schedule is None:
            return {}
        notes: dict[str, Any] = {"oracle_holds": schedule.holds, "oracle_family": schedule.family,
                                 "oracle_simulations": schedule.simulations,
                                 "oracle_search_wall_s": schedule.search_wall_s}
        if not schedule.holds:
            notes["oracle_note"] = (f"no searched schedule held every target (best minimum attainment "
                                    f"{schedule.min_attainment:.4f}); this row is not an upper reference")
        return notes
