"""The ``headroom`` action mode: the policy picks a utilisation per pool, a sizer turns demand into replicas.

In the default ``delta`` mode the policy moves replica counts by -max_step..+max_step each interval, so it has
to learn from scratch how many replicas a load needs. In ``headroom`` mode that arithmetic is done for it,
the way a capacity planner does it, and the policy learns only what a planner cannot know: how much spare
capacity the current mix, burstiness and cold starts call for. Each interval the sizer
(:mod:`agent.sizing.sizer`) plans each pool for the recent measured demand (the window's peak, or a
request-weighted quantile of it) at the utilisation level the policy chose, above the replica floor it chose;
the window is the hysteresis a delta policy must otherwise learn, and where configured the policy picks it too.
The batch knobs keep their configured values in this mode.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from disaggpilot.agent.errors import BundleError
from disaggpilot.agent.sizing.sizer import HeadroomSettings, HeadroomSizer
from disaggpilot.env.cluster_env import DisaggClusterEnv

ACTION_MODES = ("delta", "headroom")

__all__ = ["ACTION_MODES", "HeadroomEnv", "HeadroomSettings", "HeadroomSizer", "settings_from_spec"]


class HeadroomEnv(gymnasium.Wrapper[np.ndarray, np.ndarray, np.ndarray, np.ndarray]):
    """A :class:`DisaggClusterEnv` whose action is (prefill level, decode level), followed by a demand window
    and per-pool replica floors where the settings offer a choice of them; everything else unchanged.

    Args:
        env: the environment (a disaggregated cluster).
        settings: the levels, windows, floors and demand statistic.
    """

    def __init__(self, env: DisaggClusterEnv, settings: HeadroomSettings) -> None:
        super().__init__(env)
        self.cluster_env, self.settings = env, settings
        self.sizer = HeadroomSizer(settings)
        self.action_space = spaces.MultiDiscrete(settings.nvec)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the cluster and the sizer (to the episode's randomised world)."""
        observation, info = self.cluster_env.reset(seed=seed, options=options)
        self.sizer.reset(self.cluster_env.world, self.cluster_env.config.interval_s)
        return observation, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Size the pools for the chosen levels and run one interval."""
        snapshot = self.cluster_env.history[-1]
        if len(self.cluster_env.history) > 1:
            self.sizer.observe(snapshot)
        return self.cluster_env.step_targets(self.sizer.targets(np.asarray(action), snapshot))

    def action_masks(self) -> np.ndarray:
        """Every level is always allowed (the sizer clips to bounds and the budget)."""
        return np.ones(int(sum(self.settings.nvec)), dtype=bool)

    def spec_dict(self) -> dict[str, Any]:
        """The environment's spec with this mode's action space and levels."""
        return headroom_spec(self.cluster_env.spec_dict(), self.settings)


def headroom_spec(spec: dict[str, Any], settings: HeadroomSettings) -> dict[str, Any]:
    """A ``delta`` environment's ``spec`` in the headroom mode of ``settings``: its action space and levels."""
    return {**spec, "action_mode": "headroom", "headroom": settings.spec(),
            "action_dimensions": [name for name, _ in settings.dimensions],
            "action_nvec": [int(n) for n in settings.nvec]}


def settings_from_spec(spec: dict[str, Any], where: object) -> HeadroomSettings | None:
    """The headroom settings a bundle's spec records; None for a ``delta`` bundle."""
    mode = spec.get("action_mode", "delta")
    if mode not in ACTION_MODES:
        raise BundleError(f"{where}: spec 'action_mode'={mode!r} is unknown: use one of {ACTION_MODES}")
    if mode == "delta":
        return None
    try:
        return HeadroomSettings(**spec["headroom"])
    except (KeyError, TypeError, ValueError) as error:
        raise BundleError(f"{where}: spec 'headroom' is missing or invalid ({error}); re-export the bundle") from error
