"""``DisaggClusterEnv``: a disaggregated cluster as a Gymnasium environment, over any ``ClusterBackend``.

It reads only ``MetricsSnapshot``s, so the same class runs on the simulator (default), on a live cluster
and on the test backend. One step is one control interval: apply the action's targets, let the interval
pass, observe, reward. Episodes end by truncation at the horizon; nothing terminates them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from disaggpilot.env.action import ActionCodec, ActionConfig
from disaggpilot.env.backend import ClusterAction, ClusterBackend
from disaggpilot.env.catalog import load_gpu
from disaggpilot.env.errors import ConfigError, check_types, require
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.observation import CLIP, OBSERVATION_VERSION, ObservationConfig, Observer
from disaggpilot.env.randomization import RandomizationConfig, randomize
from disaggpilot.env.reward import RewardCalculator, RewardConfig
from disaggpilot.env.scenario import ScenarioConfig, load_scenario

BackendFactory = Callable[[ScenarioConfig], ClusterBackend]


@dataclass
class EnvConfig:
    """The environment's settings (``configs/env/``)."""

    interval_s: float = 30.0
    """Control interval: simulated or waited seconds per step."""
    horizon_s: float | None = None
    """Episode length (seconds); ``None`` uses the scenario's ``duration_s``."""
    action: ActionConfig = field(default_factory=ActionConfig)
    """What a policy may change."""
    observation: ObservationConfig = field(default_factory=ObservationConfig)
    """Shape and scaling of the observation."""
    randomization: RandomizationConfig = field(default_factory=RandomizationConfig)
    """Per-episode domain randomisation (simulator only)."""

    def __post_init__(self) -> None:
        check_types(self, "env")
        require(self.interval_s > 0, "env.interval_s", self.interval_s, "use a positive interval in seconds")
        require(self.horizon_s is None or self.horizon_s >= self.interval_s, "env.horizon_s", self.horizon_s,
                f"use at least one interval ({self.interval_s} s), or null for the scenario's duration")


def interface(config: EnvConfig, scenario: ScenarioConfig, world: ScenarioConfig | None = None,
              period_s: float | None = None) -> tuple[ActionCodec, Observer]:
    """The action codec and the observer of ``scenario`` under ``config``: the environment's, and the controller's
    (whose ``config`` carries a bundle's feature list, so it observes as the bundle was trained). The observer
    scales by the randomised ``world``'s cluster (its cold start) when given; the budget features' SLO period is
    ``period_s``, by default the horizon or else the scenario's duration."""
    codec = ActionCodec(config.action, scenario.cluster)
    observer = Observer(config.observation, scenario.tenants, (world or scenario).cluster,
                        len(config.action.token_budget_levels), len(config.action.batch_cap_levels),
                        period_s or config.horizon_s or scenario.duration_s)
    return codec, observer


def spec_dict(config: EnvConfig, codec: ActionCodec, observer: Observer) -> dict[str, Any]:
    """The observation/action contract of ``interface(config, ...)``'s codec and observer: what a policy bundle
    stores, and what the controller expects of one without building an environment (``expected_spec``)."""
    return {
        "observation_version": OBSERVATION_VERSION, "observation_features": list(observer.names),
        "action_dimensions": list(codec.names), "action_nvec": [int(n) for n in codec.nvec],
        "max_step": config.action.max_step,
        "token_budget_levels": list(config.action.token_budget_levels),
        "batch_cap_levels": list(config.action.batch_cap_levels),
        "interval_s": config.interval_s,
    }


def scenario_spec(config: EnvConfig, scenario: ScenarioConfig) -> dict[str, Any]:
    """The contract ``DisaggClusterEnv(scenario, config=config).spec_dict()`` returns, built from the settings
    alone (no backend, no reward): the feature names and action sizes depend on neither the episode's world
    nor the reward."""
    return spec_dict(config, *interface(config, scenario))


def simulator_factory(scenario: ScenarioConfig) -> ClusterBackend:
    """The default backend: the simulator. Imported lazily so ``env`` users of other backends skip it."""
    from disaggpilot.env.sim.cluster import SimBackend

    return SimBackend(scenario)


class DisaggClusterEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """Steer a disaggregated cluster's replica counts and batch knobs for goodput tokens per dollar.

    Args:
        scenario: the scenario, a name in ``configs/scenario/``, or None for ``steady``.
        config: environment settings.
        reward: reward settings.
        backend_factory: builds a backend for an episode's scenario (default: the simulator).
        scenarios: several scenarios to draw one from per episode (a training mix); overrides ``scenario``.
    """

    metadata = {"render_modes": []}  # noqa: RUF012  (Gymnasium declares it an instance attribute)

    def __init__(self, scenario: ScenarioConfig | str | None = None, config: EnvConfig | None = None,
                 reward: RewardConfig | None = None, backend_factory: BackendFactory | None = None,
                 scenarios: Sequence[ScenarioConfig | str] | None = None) -> None:
        self.config = config or EnvConfig()
        self.reward_config = reward or RewardConfig()
        self.scenarios = [s if isinstance(s, ScenarioConfig) else load_scenario(s)
                          for s in (scenarios or [scenario or "steady"])]
        self._check_compatible()
        self.backend_factory = backend_factory or simulator_factory
        first = self.scenarios[0]
        self._rewards = {id(s): RewardCalculator(self.reward_config, s.tenants) for s in self.scenarios}
        self._use(first)
        self.action_space = spaces.MultiDiscrete(self.codec.nvec)
        self.observation_space = spaces.Box(-CLIP, CLIP, shape=(self.observer.size,), dtype=np.float32)
        self.backend: ClusterBackend | None = None
        self.snapshot: MetricsSnapshot | None = None
        self.history: list[MetricsSnapshot] = []
        """Every snapshot of the current episode, the reset one first (for non-learned controllers)."""
        self.world: ScenarioConfig = first
        """The current episode's scenario after domain randomisation."""

    # ----- Gymnasium API -----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; the episode (scenario draw, randomisation, requests) follows from ``seed``."""
        super().reset(seed=seed)
        episode_seed = int(self.np_random.integers(0, 2**31 - 1))
        rng = np.random.default_rng(episode_seed)
        scenario = self.scenarios[int(rng.integers(len(self.scenarios)))]
        world, factors = self._world(scenario, rng)
        self._use(scenario, world)
        self.reward_calculator.reset()
        if self.backend is not None:
            self.backend.close()
        self.backend = self.backend_factory(world)
        self.snapshot = self.backend.reset(episode_seed)
        self.history = [self.snapshot]
        self.world = world
        self.observer.reset()
        self.levels = self.codec.knob_levels(self.snapshot)
        self.elapsed_s = 0.0
        info: dict[str, Any] = {"scenario": scenario.name, "episode_seed": episode_seed,
                                **{f"randomization/{k}": v for k, v in factors.items()}}
        return self.observer.build(self.snapshot, self.levels), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` for one interval."""
        if self.backend is None or self.snapshot is None:
            raise gymnasium.error.ResetNeeded("call reset() before step()")
        action = np.asarray(action, dtype=np.int64).reshape(-1)
        if action.shape != (len(self.codec.nvec),) or np.any(action < 0) or np.any(action >= self.codec.nvec):
            raise ValueError(f"action {action.tolist()} is outside the action space {self.codec.nvec}")
        cluster_action, clipped = self.codec.decode(action, self.snapshot)
        return self._run_interval(cluster_action, (int(action[-2]), int(action[-1])), clipped)

    def step_targets(self, action: ClusterAction) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Like ``step``, but with targets instead of action indices: how non-learned controllers (which
        may move more than ``max_step`` replicas, or pick knob values between levels) run in the same
        environment, judged by the same reward. Targets are clipped to bounds and the GPU budget."""
        if self.backend is None or self.snapshot is None:
            raise gymnasium.error.ResetNeeded("call reset() before step_targets()")
        cluster_action, clipped = self.codec.clip(action, self.snapshot)
        return self._run_interval(cluster_action, self.codec.levels_of(cluster_action, self.snapshot), clipped)

    def _run_interval(self, cluster_action: ClusterAction, levels: tuple[int, int], clipped: bool
                      ) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        assert self.backend is not None and self.snapshot is not None
        before = self.codec.targets(self.snapshot)
        replicas_changed = sum(abs((cluster_action.pools[r].replicas or 0) - before[r]) for r in self.codec.roles)
        knobs_changed = sum(int(a != b) for a, b in zip(levels, self.levels, strict=True))
        self.backend.apply(cluster_action)
        self.snapshot = self.backend.advance(self.config.interval_s)
        self.history.append(self.snapshot)
        self.levels = levels
        self.elapsed_s += self.config.interval_s
        reward, info = self.reward_calculator(self.snapshot, replicas_changed, knobs_changed)
        info.update({"action/clipped": clipped, "action/replicas_changed": replicas_changed,
                     "action/knobs_changed": knobs_changed})
        truncated = self.elapsed_s >= self.horizon_s - 1e-9
        return self.observer.build(self.snapshot, self.levels), float(reward), False, truncated, info

    def action_masks(self) -> np.ndarray:
        """Allowed choices per action dimension, flattened (sb3-contrib's MaskablePPO reads this)."""
        if self.snapshot is None:
            return np.ones(int(np.sum(self.codec.nvec)), dtype=bool)
        return self.codec.masks(self.snapshot)

    def close(self) -> None:
        """Close the backend."""
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    # ----- spec and helpers --------------------------------------------------------------------------------
    def spec_dict(self) -> dict[str, Any]:
        """The observation/action contract, stored in policy bundles and checked when they are loaded."""
        return spec_dict(self.config, self.codec, self.observer)

    def _use(self, scenario: ScenarioConfig, world: ScenarioConfig | None = None) -> None:
        """Switch to ``scenario``; the observation describes its randomised ``world`` (its cold start)."""
        self.scenario = scenario
        self.codec, self.observer = interface(self.config, scenario, world)
        self.reward_calculator = self._rewards[id(scenario)]
        self.horizon_s = self.config.horizon_s or scenario.duration_s

    def _world(self, scenario: ScenarioConfig, rng: np.random.Generator) -> tuple[ScenarioConfig, dict[str, float]]:
        if not self.config.randomization.enabled:
            return scenario, {}
        gpu = load_gpu(scenario.hardware)
        return randomize(scenario, self.config.randomization, rng, gpu.usd_per_gpu_hour, gpu.inter_node_gbps)

    def _check_compatible(self) -> None:
        roles = {tuple(s.cluster.enabled_roles()) for s in self.scenarios}
        if len(roles) > 1:
            raise ConfigError(f"scenarios {[s.name for s in self.scenarios]} enable different pools {sorted(roles)}: "
                              "one policy's action space needs the same pools in every scenario of a mix")
