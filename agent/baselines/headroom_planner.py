"""``headroom_planner``: plan each pool for its recent demand at one fixed utilisation, above a fixed floor.

The non-learned twin of the learned ``headroom`` action mode: the same sizer (:mod:`agent.sizing.sizer`),
with one utilisation per pool (and one window, floor per pool and demand statistic) held for the whole episode
instead of the choices a policy makes each interval: the non-learned fixed points of the learned family.
Its window peak plays the part of the Kubernetes HPA's scale-down stabilisation window (the HPA keeps the
highest recommendation of the last 5 minutes by default, ``--horizontal-pod-autoscaler-downscale-
stabilization``; here 40 intervals of 30 s, 20 min: a longer window lets bursty tenants run at a higher
utilisation, because the replicas one burst called for are still up when the next comes). Against the SLA
planner, which plans for the forecast mean at full profiled throughput, the headroom is what holds the tail:
the spare capacity absorbs bursts during the cold start of the replicas they call for.

The defaults are one setting for every scenario, picked from a grid of windows (4-240 intervals) and
utilisations: the highest-earning setting that held every tenant's target on the five scenarios of
``configs/scenario/`` over seeds 0-2 and, but for one episode (0.94994 of 0.95), over seeds 3-8
(``docs/experiments/2026-11-29-headroom-planner.md``).
It reads its demand window from the history it is given, not from earlier calls, so it can serve as the
controller's fallback planner, which is asked only when the policy cannot be trusted. Disaggregated clusters
only (a prefill and a decode pool).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from disaggpilot.agent.baselines.common import BaselineError, build_settings
from disaggpilot.agent.policy import PolicyContext
from disaggpilot.agent.sizing.demand import validate_statistic
from disaggpilot.agent.sizing.sizer import HeadroomSettings, HeadroomSizer
from disaggpilot.env.backend import ClusterAction
from disaggpilot.env.errors import require
from disaggpilot.env.metrics import MetricsSnapshot

_FIXED_LEVELS = np.zeros(2, dtype=np.int64)  # the sizer's only level per pool


@dataclass
class HeadroomPlannerSettings:
    """Settings of :class:`HeadroomPlannerPolicy` (``configs/policy/headroom_planner.yaml``)."""

    prefill_utilization: float = 0.4
    """Fraction of one prefill replica's token rate to plan for (fraction, in (0, 1.5])."""
    decode_utilization: float = 0.6
    """Fraction of one decode replica's token rate at the TPOT target to plan for (fraction, in (0, 1.5])."""
    demand_window_intervals: int = 40
    """Control intervals whose demand is planned for (intervals; 40 x 30 s = 20 min)."""
    prefill_floor: int = 0
    """Fewest prefill replicas to run (replicas; 0: the pool's own minimum; the GPU budget wins over it)."""
    decode_floor: int = 0
    """Fewest decode replicas to run (replicas; 0: the pool's own minimum; the GPU budget wins over it)."""
    demand_statistic: str = "peak"
    """How the window's demand becomes one plan: ``peak`` or ``quantile`` (:mod:`agent.sizing.demand`)."""
    demand_quantile: float = 0.9
    """With ``quantile``: the fraction of the window's requests whose intervals the plan covers (in (0, 1])."""

    def __post_init__(self) -> None:
        for key in ("prefill_utilization", "decode_utilization"):
            value = getattr(self, key)
            require(0 < value <= 1.5, f"agent.headroom_planner.{key}", value, "use a utilisation in (0, 1.5]")
        require(self.demand_window_intervals >= 1, "agent.headroom_planner.demand_window_intervals",
                self.demand_window_intervals, "use >= 1 interval")
        for key in ("prefill_floor", "decode_floor"):
            require(int(getattr(self, key)) == getattr(self, key) and getattr(self, key) >= 0,
                    f"agent.headroom_planner.{key}", getattr(self, key), "use a whole number of replicas >= 0")
        validate_statistic(self.demand_statistic, self.demand_quantile, "agent.headroom_planner")

    def sizer_settings(self) -> HeadroomSettings:
        """The sizer's settings: one choice of each."""
        return HeadroomSettings(prefill_utilization_levels=[self.prefill_utilization],
                                decode_utilization_levels=[self.decode_utilization],
                                demand_window_intervals=self.demand_window_intervals,
                                prefill_floor_choices=[int(self.prefill_floor)],
                                decode_floor_choices=[int(self.decode_floor)],
                                demand_statistic=self.demand_statistic, demand_quantile=self.demand_quantile)


class HeadroomPlannerPolicy:
    """Size both pools for the window's demand at fixed utilisations, above fixed floors.

    Args:
        **params: fields of :class:`HeadroomPlannerSettings`.
    """

    name = "headroom_planner"

    def __init__(self, **params: Any) -> None:
        self.settings = build_settings(HeadroomPlannerSettings, params, self.name)
        self.sizer = HeadroomSizer(self.settings.sizer_settings())
        self._ready = False
        self._before: list[MetricsSnapshot] = []

    def reset(self, context: PolicyContext) -> None:
        """Profile the episode's cluster (a ``ConfigError`` for one without prefill and decode pools) and
        forget the demand window."""
        self.sizer.reset(context.scenario, context.interval_s)
        self._ready = True
        self._before = []

    @property
    def warm_up_intervals(self) -> int:
        """How many intervals from before the first decision :meth:`warm_up` keeps: the demand window."""
        return self.settings.demand_window_intervals

    def warm_up(self, history: Sequence[MetricsSnapshot]) -> None:
        """Keep intervals that ended before the first decision (a restarted controller's replay of its metrics
        store; oldest first): the window reads them ahead of the history it is handed until that fills it."""
        self._before = list(history)[-self.warm_up_intervals:]

    def act(self, observation: np.ndarray, history: Sequence[MetricsSnapshot]) -> ClusterAction:
        """Targets for the next interval from the demand of the last window of ``history``."""
        if not self._ready:
            raise BaselineError(f"{self.name}: call reset(context) before act()")
        measured = [s for s in history[-self.warm_up_intervals:] if s.interval_s > 0]  # not the first scrape
        self.sizer.observe_recent(measured if len(measured) >= self.warm_up_intervals else [*self._before, *measured])
        return self.sizer.targets(_FIXED_LEVELS, history[-1])
