"""Capacity sizing for a utilisation target: measured demand in, replica counts out.

Shared by the learned ``headroom`` action mode (:mod:`agent.headroom`, where the policy picks the level each
interval) and the non-learned ``headroom_planner`` baseline (one fixed level per pool). Each interval:

    demand(pool)   = the largest of the last ``demand_window_intervals`` intervals' measured token rates
                     (prefill: arrivals x mean prompt length; decode: arrivals x mean output length)
    capacity(pool) = one replica's token rate from the scenario's performance model (prefill at the mean
                     prompt length; decode at the strictest tenant's TPOT target), as Dynamo's planner profiles it
    replicas(pool) = ceil(demand / (capacity x utilisation level))

then bounded to the pool's limits and the GPU budget. Taking the window's peak makes scale-down wait until
the demand has stayed low for the whole window, like the Kubernetes HPA's scale-down stabilisation window.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from agent.baselines.common import bounded, current_replicas
from agent.baselines.profile import PerfProfile
from agent.baselines.signals import observed_load
from env.backend import ClusterAction, PoolTarget
from env.cluster_config import ClusterConfig
from env.errors import require
from env.metrics import MetricsSnapshot
from env.scenario import ScenarioConfig


def _levels_ok(levels: Sequence[float]) -> bool:
    values = [float(v) for v in levels]
    return len(values) >= 1 and all(0 < v <= 1.5 for v in values) and values == sorted(set(values))


@dataclass
class HeadroomSettings:
    """The utilisation levels a ``headroom`` policy chooses from (``agent.headroom`` in configs)."""

    prefill_utilization_levels: list[float] = field(default_factory=lambda: [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85])
    """Fractions of one prefill replica's token rate to plan for (increasing, each in (0, 1.5])."""
    decode_utilization_levels: list[float] = field(default_factory=lambda: [0.3, 0.45, 0.6, 0.75, 0.9])
    """Fractions of one decode replica's token rate at the TPOT target to plan for (increasing, in (0, 1.5])."""
    demand_window_intervals: int = 4
    """Control intervals whose peak demand is planned for (intervals; 4 x 30 s = 2 min of scale-down delay)."""

    def __post_init__(self) -> None:
        for key in ("prefill_utilization_levels", "decode_utilization_levels"):
            levels = list(getattr(self, key))
            require(_levels_ok(levels), f"agent.headroom.{key}", levels,
                    "give increasing, distinct fractions in (0, 1.5]")
            setattr(self, key, [float(v) for v in levels])
        require(self.demand_window_intervals >= 1, "agent.headroom.demand_window_intervals",
                self.demand_window_intervals, "use >= 1 interval")

    @property
    def nvec(self) -> list[int]:
        """The ``MultiDiscrete`` sizes: prefill level, decode level."""
        return [len(self.prefill_utilization_levels), len(self.decode_utilization_levels)]


@dataclass
class _Demand:
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    prompt_tokens: float
    output_tokens: float


class HeadroomSizer:
    """Turns (prefill level, decode level) indices into replica targets from the measured demand.

    Args:
        settings: the levels and the demand window.
    """

    def __init__(self, settings: HeadroomSettings) -> None:
        self.settings = settings
        self.window: deque[_Demand] = deque(maxlen=settings.demand_window_intervals)

    def reset(self, scenario: ScenarioConfig, interval_s: float) -> None:
        """Start an episode: profile one replica of each pool, forget the demand."""
        self.scenario, self.interval_s = scenario, interval_s
        self.profile = PerfProfile(scenario)
        self.tpot_target_s = min(tenant.tpot_slo_s for tenant in scenario.tenants)
        self.window.clear()
        self.lengths = (1.0, 1.0)

    def observe(self, snapshot: MetricsSnapshot) -> None:
        """Add the interval that just ended to the demand window."""
        load = observed_load([snapshot])
        if math.isfinite(load.prompt_tokens) and math.isfinite(load.output_tokens):
            self.lengths = (max(1.0, load.prompt_tokens), max(1.0, load.output_tokens))
        rate = load.requests / max(snapshot.interval_s, 1e-9)
        prompt, output = self.lengths
        self.window.append(_Demand(rate * prompt, rate * output, prompt, output))

    def observe_recent(self, history: Sequence[MetricsSnapshot]) -> None:
        """Refill the window from the last intervals of ``history`` (oldest first), skipping zero-length
        snapshots such as an episode's reset: the same window as observing every interval as it ended."""
        self.window.clear()
        for snapshot in history[-self.settings.demand_window_intervals:]:
            if snapshot.interval_s > 0:
                self.observe(snapshot)

    def targets(self, action: np.ndarray, snapshot: MetricsSnapshot) -> ClusterAction:
        """Replica targets for level indices ``action`` = (prefill level, decode level)."""
        if not self.window:
            return ClusterAction.replicas(prefill=current_replicas(snapshot, "prefill"),
                                          decode=current_replicas(snapshot, "decode"))
        levels = self.settings
        prefill_util = levels.prefill_utilization_levels[int(action[0])]
        decode_util = levels.decode_utilization_levels[int(action[1])]
        prompt = max(d.prompt_tokens for d in self.window)
        context = prompt + max(d.output_tokens for d in self.window) / 2
        prefill_rate = self.profile.prefill_throughput_per_gpu(prompt) * self.profile.prefill_gpus
        decode_rate = (self.profile.best_decode_throughput_per_gpu(self.tpot_target_s, context)
                       * self.profile.decode_gpus)
        prefill = math.ceil(max(d.prefill_tokens_per_s for d in self.window) / (prefill_rate * prefill_util) - 1e-9)
        decode = math.ceil(max(d.decode_tokens_per_s for d in self.window) / (decode_rate * decode_util) - 1e-9)
        return self._fitted(max(1, prefill), max(1, decode))

    def _fitted(self, prefill: int, decode: int) -> ClusterAction:
        """Within each pool's bounds and the GPU budget (:func:`fit_to_budget`)."""
        prefill, decode = fit_to_budget(self.scenario.cluster, prefill, decode)
        return ClusterAction({"prefill": PoolTarget(replicas=prefill), "decode": PoolTarget(replicas=decode)})


def fit_to_budget(cluster: ClusterConfig, prefill: int, decode: int) -> tuple[int, int]:
    """Prefill and decode counts within each pool's bounds; over the GPU budget, both pools shrink in proportion."""
    prefill, decode = bounded(cluster, "prefill", prefill), bounded(cluster, "decode", decode)
    tp_p, tp_d = cluster.prefill.tp, cluster.decode.tp
    if prefill * tp_p + decode * tp_d > cluster.gpu_budget:
        scale = cluster.gpu_budget / (prefill * tp_p + decode * tp_d)
        prefill = bounded(cluster, "prefill", math.floor(prefill * scale))
        decode = bounded(cluster, "decode", (cluster.gpu_budget - prefill * tp_p) // tp_d)
    return prefill, decode
