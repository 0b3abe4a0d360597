"""Capacity sizing for a utilisation target: measured demand in, replica counts out.

Shared by the learned ``headroom`` action mode (:mod:`agent.headroom`, where the policy picks the level each
interval) and the non-learned ``headroom_planner`` baseline (one fixed choice). Each interval:

    need(pool, i)  = interval i's measured token rate / one replica's token rate at interval i's lengths
                     (prefill: arrivals x mean prompt length; decode: arrivals x mean output length; a replica's
                     rate from the scenario's performance model, prefill at the mean prompt length, decode at
                     the strictest tenant's TPOT target, as Dynamo's planner profiles it)
    plan(pool)     = the window's peak demand at its longest mean lengths (``peak``), or the request-weighted
                     quantile of need(pool, i) over the window (``quantile``; :mod:`agent.sizing.demand`)
    replicas(pool) = max(floor(pool), ceil(plan / utilisation level))

then bounded to the pool's limits and the GPU budget (which wins over a floor). Planning for the window makes
scale-down wait until the demand has stayed low for the whole window, like the Kubernetes HPA's scale-down
stabilisation window.

What a policy chooses each interval, and why this shape: a utilisation level per pool, and where configured
(:class:`HeadroomSettings`) a demand window and a replica floor per pool, each an index into a short list,
so the action stays a small ``MultiDiscrete`` (e.g. 8 x 6 x 3 x 3 x 3 = 1,296 joint choices as five heads of
at most 8 logits) that a warm start can pin to a planner's setting. A bounded residual of replicas on top of a
short-window sizer would reach the same schedules, but it needs a head per pool wide enough to undo the
sizer's errors (a dozen replicas either way) and forgets the window between intervals, while a floor and a
window are what the fixed points that beat the static configuration actually use.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from disaggpilot.agent.sizing.demand import DEMAND_STATISTICS, validate_statistic, weighted_quantile
from disaggpilot.agent.sizing.pools import bounded, current_replicas
from disaggpilot.agent.sizing.profile import PerfProfile
from disaggpilot.agent.sizing.signals import observed_load
from disaggpilot.env.backend import ClusterAction, PoolTarget
from disaggpilot.env.cluster_config import ClusterConfig
from disaggpilot.env.errors import require
from disaggpilot.env.metrics import MetricsSnapshot
from disaggpilot.env.scenario import ScenarioConfig


def _levels_ok(levels: Sequence[float]) -> bool:
    values = [float(v) for v in levels]
    return len(values) >= 1 and all(0 < v <= 1.5 for v in values) and values == sorted(set(values))


def _counts_ok(counts: Sequence[int], least: int) -> bool:
    values = [int(v) for v in counts]
    return len(values) >= 1 and all(v >= least for v in values) and values == sorted(set(values))


@dataclass(frozen=True)
class SizerChoice:
    """One interval's sizing decision, decoded from an action.

    Attributes:
        prefill_utilization: fraction of one prefill replica's token rate to plan for.
        decode_utilization: fraction of one decode replica's token rate to plan for.
        window_intervals: the last intervals whose demand is planned for (intervals).
        prefill_floor: fewest prefill replicas to run (replicas; 0 for the pool's own minimum).
        decode_floor: fewest decode replicas to run (replicas; 0 for the pool's own minimum).
        demand_statistic: how the window becomes one plan (``peak`` or ``quantile``).
    """

    prefill_utilization: float
    decode_utilization: float
    window_intervals: int
    prefill_floor: int = 0
    decode_floor: int = 0
    demand_statistic: str = "peak"


@dataclass
class HeadroomSettings:
    """The choices a ``headroom`` policy has (``agent.headroom`` in configs).

    The action has one dimension per pool's utilisation level and one more for each of the demand window and
    the two floors that offers more than one choice; with one choice each (the defaults) it is the original
    (prefill level, decode level), so bundles trained before the window and floors existed act as they did.
    """

    prefill_utilization_levels: list[float] = field(
        default_factory=lambda: [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0])
    """Fractions of one prefill replica's token rate to plan for (increasing, each in (0, 1.5])."""
    decode_utilization_levels: list[float] = field(default_factory=lambda: [0.3, 0.45, 0.6, 0.75, 0.9, 1.0])
    """Fractions of one decode replica's token rate at the TPOT target to plan for (increasing, in (0, 1.5])."""
    demand_window_intervals: int = 4
    """Control intervals whose demand is planned for (intervals; 4 x 30 s = 2 min of scale-down delay). With
    ``demand_window_choices`` it must be their largest: the history the sizer keeps."""
    demand_window_choices: list[int] = field(default_factory=list)
    """Windows the policy picks from each interval (intervals, increasing, each >= 1); empty: the one window
    ``demand_window_intervals``, and no window dimension in the action."""
    prefill_floor_choices: list[int] = field(default_factory=lambda: [0])
    """Fewest prefill replicas the policy may ask to keep (replicas, increasing, >= 0; 0: the pool's minimum).
    A dimension of the action when there is more than one."""
    decode_floor_choices: list[int] = field(default_factory=lambda: [0])
    """Fewest decode replicas the policy may ask to keep (replicas, increasing, >= 0; 0: the pool's minimum)."""
    demand_statistic: str = "peak"
    """How the window's demand becomes one plan: ``peak`` or ``quantile`` (:mod:`agent.sizing.demand`)."""
    demand_quantile: float = 0.9
    """With ``quantile``: the fraction of the window's requests whose intervals the plan covers (in (0, 1])."""
    demand_statistic_choices: list[str] = field(default_factory=list)
    """Statistics the policy picks from each interval (``peak``, ``quantile``); empty: the one
    ``demand_statistic``, and no statistic dimension in the action. Workloads differ in which pays: heavy-tailed
    prompts want ``quantile``, sharp bursts ``peak`` (docs/experiments/2026-12-07-fixed-points.md)."""

    def __post_init__(self) -> None:
        for key in ("prefill_utilization_levels", "decode_utilization_levels"):
            levels = list(getattr(self, key))
            require(_levels_ok(levels), f"agent.headroom.{key}", levels,
                    "give increasing, distinct fractions in (0, 1.5]")
            setattr(self, key, [float(v) for v in levels])
        require(self.demand_window_intervals >= 1, "agent.headroom.demand_window_intervals",
                self.demand_window_intervals, "use >= 1 interval")
        for key, least in (("demand_window_choices", 1), ("prefill_floor_choices", 0), ("decode_floor_choices", 0)):
            counts = [int(v) for v in getattr(self, key)]
            require(_counts_ok(counts, least) or (key == "demand_window_choices" and not counts),
                    f"agent.headroom.{key}", counts, f"give increasing, distinct whole numbers >= {least}")
            setattr(self, key, counts)
        require(not self.demand_window_choices or self.demand_window_intervals == self.demand_window_choices[-1],
                "agent.headroom.demand_window_intervals", self.demand_window_intervals,
                f"with demand_window_choices set it to their largest, {self.demand_window_choices[-1:]}")
        validate_statistic(self.demand_statistic, self.demand_quantile, "agent.headroom")
        choices = [str(v) for v in self.demand_statistic_choices]
        require(len(set(choices)) == len(choices) and all(c in DEMAND_STATISTICS for c in choices),
                "agent.headroom.demand_statistic_choices", choices, f"give distinct names from {DEMAND_STATISTICS}")
        self.demand_statistic_choices = choices

    @property
    def windows(self) -> list[int]:
        """The demand windows to choose from (intervals)."""
        return self.demand_window_choices or [self.demand_window_intervals]

    @property
    def statistics(self) -> list[str]:
        """The demand statistics to choose from."""
        return self.demand_statistic_choices or [self.demand_statistic]

    @property
    def dimensions(self) -> list[tuple[str, int]]:
        """(name, number of choices) of each action dimension, in order."""
        extra = [("demand_window", len(self.windows)), ("prefill_floor", len(self.prefill_floor_choices)),
                 ("decode_floor", len(self.decode_floor_choices)), ("demand_statistic", len(self.statistics))]
        return [("prefill_utilization_level", len(self.prefill_utilization_levels)),
                ("decode_utilization_level", len(self.decode_utilization_levels))] + [d for d in extra if d[1] > 1]

    @property
    def nvec(self) -> list[int]:
        """The ``MultiDiscrete`` sizes, one per dimension of :attr:`dimensions`."""
        return [size for _, size in self.dimensions]

    def choice(self, action: np.ndarray) -> SizerChoice:
        """Decode action indices (one per dimension of :attr:`dimensions`) into a :class:`SizerChoice`."""
        index = {name: int(i) for (name, _), i in zip(self.dimensions, np.asarray(action).reshape(-1), strict=True)}
        return SizerChoice(self.prefill_utilization_levels[index["prefill_utilization_level"]],
                           self.decode_utilization_levels[index["decode_utilization_level"]],
                           self.windows[index.get("demand_window", 0)],
                           self.prefill_floor_choices[index.get("prefill_floor", 0)],
                           self.decode_floor_choices[index.get("decode_floor", 0)],
                           self.statistics[index.get("demand_statistic", 0)])

    def spec(self) -> dict[str, Any]:
        """The settings as a bundle's spec records them: the fields added after the first headroom bundles only
        where they differ from their defaults, so those bundles' specs still match."""
        recorded, defaults = asdict(self), asdict(HeadroomSettings())
        return {key: value for key, value in recorded.items()
                if key in _ORIGINAL_FIELDS or value != defaults[key]}


_ORIGINAL_FIELDS = ("prefill_utilization_levels", "decode_utilization_levels", "demand_window_intervals")


@dataclass
class _Demand:
    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    prompt_tokens: float
    output_tokens: float
    requests: float = 0.0


class HeadroomSizer:
    """Turns action indices (:attr:`HeadroomSettings.dimensions`) into replica targets from the measured demand.

    Args:
        settings: the levels, windows, floors and demand statistic.
    """

    def __init__(self, settings: HeadroomSettings) -> None:
        self.settings = settings
        self.window: deque[_Demand] = deque(maxlen=max(settings.windows))

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
        self.window.append(_Demand(rate * prompt, rate * output, prompt, output, load.requests))

    def observe_recent(self, history: Sequence[MetricsSnapshot]) -> None:
        """Refill the window from the last intervals of ``history`` (oldest first), skipping zero-length
        snapshots such as an episode's reset: the same window as observing every interval as it ended."""
        self.window.clear()
        for snapshot in history[-max(self.settings.windows):]:
            if snapshot.interval_s > 0:
                self.observe(snapshot)

    def targets(self, action: np.ndarray, snapshot: MetricsSnapshot) -> ClusterAction:
        """Replica targets for action indices ``action`` (one per dimension of the settings' ``dimensions``)."""
        if not self.window:
            return ClusterAction.replicas(prefill=current_replicas(snapshot, "prefill"),
                                          decode=current_replicas(snapshot, "decode"))
        choice = self.settings.choice(action)
        recent = list(self.window)[-choice.window_intervals:]
        prefill_need, decode_need = self._needs(recent, choice.demand_statistic)
        prefill = math.ceil(prefill_need / choice.prefill_utilization - 1e-9)
        decode = math.ceil(decode_need / choice.decode_utilization - 1e-9)
        return self._fitted(max(1, prefill, choice.prefill_floor), max(1, decode, choice.decode_floor))

    def _needs(self, recent: list[_Demand], statistic: str) -> tuple[float, float]:
        """Replicas each pool needs at full utilisation for ``recent``'s demand (``statistic``)."""
        if statistic == "peak":  # the window's peak demand at its longest lengths
            prompt = max(d.prompt_tokens for d in recent)
            prefill_rate, decode_rate = self._rates(prompt, max(d.output_tokens for d in recent))
            return (max(d.prefill_tokens_per_s for d in recent) / prefill_rate,
                    max(d.decode_tokens_per_s for d in recent) / decode_rate)
        rates = [self._rates(d.prompt_tokens, d.output_tokens) for d in recent]
        weights = [d.requests for d in recent]
        quantile = self.settings.demand_quantile
        return (weighted_quantile([d.prefill_tokens_per_s / r[0] for d, r in zip(recent, rates, strict=True)],
                                  weights, quantile),
                weighted_quantile([d.decode_tokens_per_s / r[1] for d, r in zip(recent, rates, strict=True)],
                                  weights, quantile))

    def _rates(self, prompt: float, output: float) -> tuple[float, float]:
        """One replica's prefill and decode token rates at these mean lengths (tokens/s)."""
        prefill = self.profile.prefill_throughput_per_gpu(prompt) * self.profile.prefill_gpus
        decode = (self.profile.best_decode_throughput_per_gpu(self.tpot_target_s, prompt + output / 2)
                  * self.profile.decode_gpus)
        return prefill, decode

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
